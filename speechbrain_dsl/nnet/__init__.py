"""Neural-network building blocks of the Dynamic Switch Layer codec.

The layers and losses the models are made of: causal convolutions with
receptive-field bookkeeping (:mod:`~speechbrain_dsl.nnet.conv`), the Dynamic Switch
Layer and its loss (:mod:`~speechbrain_dsl.nnet.dsl`), the switch's target measured on
the decoded audio (:mod:`~speechbrain_dsl.nnet.decode_gap`), the routing planner that turns
routes into each tail's work without torch (:mod:`~speechbrain_dsl.nnet.routing`),
per-segment masks and means (:mod:`~speechbrain_dsl.nnet.segments`), the residual
vector quantizer (:mod:`~speechbrain_dsl.nnet.quantizer`), reconstruction and
adversarial losses (:mod:`~speechbrain_dsl.nnet.losses`), Gated Compression
(:mod:`~speechbrain_dsl.nnet.gated_compression`) and training-time augmentation
(:mod:`~speechbrain_dsl.nnet.augment`). Import the submodules themselves: this package
imports none of them, so the numpy-only planner loads without torch.
"""
