"""One module per sequence mixer; each registers itself with ``@register_mixer``.

Every module here is imported by the registry on first use (see ``archs/registry.py``).
"""
