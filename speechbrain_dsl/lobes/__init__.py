"""Whole models assembled from :mod:`speechbrain_dsl.nnet` blocks.

The codec (:class:`~speechbrain_dsl.lobes.codec.DSLCodec`: encoder, residual vector
quantizer and decoder), SoundStream's causal encoder and decoder
(:mod:`~speechbrain_dsl.lobes.soundstream`), the encoder with a Dynamic Switch Layer
after one of its blocks (:mod:`~speechbrain_dsl.lobes.dsl_encoder`), the frame-rate
Vocos-style decoder (:mod:`~speechbrain_dsl.lobes.vocos`), the discriminators of
adversarial training (:mod:`~speechbrain_dsl.lobes.discriminators`) and the
downstream probes on embeddings and tokens (:mod:`~speechbrain_dsl.lobes.probes`).
Import the submodules themselves: this package imports none of them.
"""
