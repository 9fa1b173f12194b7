"""Small helpers for HyperPyYAML model files."""


def choose(options, key, name="choice"):
    """Builds ``options[key]``: lets a YAML offer alternatives selected by one key.

    Arguments
    ---------
    options : dict
        Name -> a callable (e.g. a ``!name:`` partial) or an object.
    key : str
    name : str
        The YAML key that holds ``key``, named in the error.

    Example
    -------
    >>> choose({"a": lambda: 1, "b": lambda: 2}, "b")
    2
    >>> choose({"a": lambda: 1}, "c", "decoder_type")
    Traceback (most recent call last):
    ...
    ValueError: decoder_type='c' is not one of ['a']
    """
    if key not in options:
        raise ValueError(f"{name}={key!r} is not one of {sorted(options)}")
    option = options[key]
    return option() if callable(option) else option
