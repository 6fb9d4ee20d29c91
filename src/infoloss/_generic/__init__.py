"""The definitions: every quantity written once against the Python Array API.

No NumPy special cases and no framework imports: these functions take arrays of any Array API
namespace ``xp`` and are traceable (``jax.jit``, ``torch.compile``) and differentiable by each
framework's autodiff. They are the reference the fused kernels (:mod:`infoloss._fast`) must
agree with; :mod:`infoloss._router` sends a call here when no faster route applies.
"""
