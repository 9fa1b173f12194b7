"""Choosing the switch threshold: for a target light share or a maximum quality drop.

A segment takes the light tail when its predicted distance is *below* the
threshold, so the threshold for a light share ``p`` is the ``p``-quantile of the
predictions on a calibration set.
"""

import torch  # noqa: F401 (the doctests use it)


def threshold_for_share(predicted, share):
    """Threshold sending ``share`` of the segments in ``predicted`` light.

    Arguments
    ---------
    predicted : torch.Tensor
        Predicted distances of calibration segments (any shape).
    share : float
        Target light share in [0, 1].

    Returns
    -------
    float
        ``(predicted < threshold).mean()`` is ``share`` up to ties.

    Example
    -------
    >>> pred = torch.arange(10.0)
    >>> t = threshold_for_share(pred, 0.3)
    >>> round(float((pred < t).float().mean()), 6)
    0.3
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    values = predicted.flatten().double().sort().values
    if values.numel() == 0:
        raise ValueError("threshold_for_share: no predictions to calibrate on")
    count = round(share * values.numel())
    if count == 0:
        return float(values[0]) - 1e-9
    if count == values.numel():
        return float(values[-1]) + 1e-9
    # Midway between the last segment sent light and the first kept full.
    return float((values[count - 1] + values[count]) / 2)


def threshold_for_quality_drop(predicted, quality_drop, max_drop):
    """Largest threshold whose mixed-pass quality drop stays within ``max_drop``.

    Arguments
    ---------
    predicted : torch.Tensor
        ``[N]`` predicted distances of calibration segments.
    quality_drop : torch.Tensor
        ``[N]`` how much each segment loses when it goes light (e.g. light minus
        full mel distance); the drop of a routing is the mean over all segments of
        the drops of those sent light.
    max_drop : float

    Returns
    -------
    threshold : float
    share : float
        Light share at that threshold.

    Example
    -------
    >>> pred = torch.tensor([0.1, 0.2, 0.3, 0.4])
    >>> drop = torch.tensor([0.0, 0.0, 0.4, 1.0])
    >>> threshold_for_quality_drop(pred, drop, max_drop=0.05)[1]
    0.5
    """
    predicted, quality_drop = predicted.flatten(), quality_drop.flatten()
    if predicted.shape != quality_drop.shape:
        raise ValueError("predicted and quality_drop must have the same number of segments")
    order = predicted.argsort()
    # Routing at a threshold sends a prefix of the sorted segments light; its
    # drop is the running sum of their drops over all segments.
    mean_drop = quality_drop[order].cumsum(0) / predicted.numel()
    allowed = (mean_drop <= max_drop).nonzero()
    count = int(allowed.max()) + 1 if allowed.numel() else 0
    share = count / predicted.numel()
    return threshold_for_share(predicted, share), share


def largest_share_within(drop_at, high, max_drop, steps=4):
    """Largest light share in ``[0, high]`` whose quality drop stays within ``max_drop``.

    For a costly measure (e.g. ViSQOL of the mixed pass on a calibration set):
    ``high`` is tried first, then ``steps`` halvings of the interval. The drop is
    taken to grow with the share, and a share of 0 (the full pass) to lose nothing.

    Arguments
    ---------
    drop_at : callable
        ``drop_at(share) -> float``: the quality lost at that light share.
    high : float
        The largest share to consider (e.g. the one a cheaper budget allows).
    max_drop : float
    steps : int
        Halvings after ``high`` failed; the answer is within ``high / 2**steps``.

    Returns
    -------
    share : float
        0 when even the smallest share tried breaks the budget.
    tried : dict
        ``{share: drop}`` of every share measured, in order.

    Example
    -------
    >>> share, tried = largest_share_within(lambda s: s / 2, high=0.4, max_drop=0.05)
    >>> share, [round(s, 3) for s in tried]
    (0.1, [0.4, 0.2, 0.1, 0.15, 0.125])
    >>> largest_share_within(lambda s: 0.0, high=0.4, max_drop=0.05)[0]
    0.4
    """
    if steps < 0:
        raise ValueError(f"largest_share_within: steps must be >= 0, got {steps}")
    tried = {}

    def within(share):
        tried[share] = float(drop_at(share))
        return tried[share] <= max_drop

    if high <= 0 or within(high):
        return max(high, 0.0), tried
    low, up = 0.0, high
    for _ in range(steps):
        middle = (low + up) / 2
        if within(middle):
            low = middle
        else:
            up = middle
    return low, tried
