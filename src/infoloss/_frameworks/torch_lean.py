"""Lean PyTorch autograd on any device: analytic gradients written in torch ops.

Where the fused numba kernels do not run (CUDA, MPS and other devices; CPU with the fast path
switched off) a loss used to be differentiated by autograd operation by operation through the
generic definition, which keeps every N × C intermediate for the backward pass. Here each family
runs inside one :class:`torch.autograd.Function`:

- the **forward** computes the value and, when an input requires grad, the analytic gradient in
  the same few passes over the logits (torch ops only, so any device), keeping the gradient as
  the only N × C residual (it becomes ``.grad``, so nothing else of that size survives);
- the **backward** scales that gradient by the incoming one, in place (no pass at all when the
  incoming gradient is 1); a second ``backward(retain_graph=True)`` recomputes it;
- **double backward** (``create_graph=True``): the backward differentiates the generic definition
  instead (:mod:`infoloss._generic`), so higher derivatives are the definition's.

The softmax cross-entropies have their own lean passes (:func:`softmax_ce_rows`): row maximum,
``x − m``, its exponential in place, row sums, then the gradient formed in that same buffer. Rows
the lean formula does not cover exactly are recomputed by the definition on the subset
(:func:`infoloss._generic.losses.softmax_ce_rows`): a non-finite per-row loss (nan, ``+inf``,
masked targets, all ``-inf`` rows). Confident rows (``Σ exp(x − m) < 2``) take the definition's
``log1p`` of the sum without the maximum, so small losses keep their relative accuracy.
With soft-capping the passes run on ``c·tanh(x/c)`` and the gradient is multiplied by
``1 / cosh²(x/c)`` (the chain rule); the linear layer takes per-token sample weights as well.

The sigmoid cross-entropy and the two softmax measures compute value and gradient with the
generic definition under ``no_grad`` and keep only the gradient.

Labels, class/sample weights or ``pos_weight`` that require grad are not handled here: the router
sends such calls to the generic definition, which autograd differentiates (the documented
fallback), as it does under ``torch.func`` transforms and while ``torch.compile`` traces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from .. import _reduce
from .._generic import linear as g_linear
from .._generic import losses as g_losses
from .._generic import measures as g_measures
from .._specs import CEOptions, LinearCE, SigmoidCE, SoftmaxCE, SoftmaxMeasure

__all__ = ["linear_ce", "sigmoid_ce", "softmax_ce", "softmax_ce_rows", "softmax_measure"]

_INF = float("inf")


# --------------------------------------------------------------------------- autograd


class _Run:
    """One call: ``compute(want_grads)`` gives the value and the gradients (plain tensors);
    ``generic(*inputs)`` the differentiable gradients of the definition (for double backward);
    ``axis`` is where the incoming gradient needs a class axis (``None``: it broadcasts)."""

    def __init__(
        self,
        compute: Callable[[tuple[bool, ...]], tuple[torch.Tensor, tuple[Any, ...]]],
        generic: Callable[..., tuple[Any, ...]],
        axis: int | None,
    ):
        self.compute, self.generic, self.axis = compute, generic, axis


class _SavedGrad(torch.autograd.Function):
    """Forward: value and analytic gradient(s) in one computation; backward: the saved gradient
    scaled by the incoming one."""

    @staticmethod
    def forward(ctx: Any, run: _Run, need: tuple[bool, ...], out: Any, *inputs: Any) -> Any:
        want = tuple(n or out is not None for n in need)
        value, grads = run.compute(want)
        if out is not None:  # value_and_grad: the gradients are handed out as well
            out.extend(
                g.to(x.dtype) if g is not None else None for g, x in zip(grads, inputs, strict=True)
            )
        ctx.run = run
        ctx.dtypes = tuple(x.dtype for x in inputs)
        ctx.shapes = tuple(x.shape for x in inputs)
        ctx.grads = tuple(g if n else None for g, n in zip(grads, need, strict=True))
        ctx.owned = out is None
        if any(need):
            ctx.save_for_backward(*inputs)  # for double backward, recompute; version checks
        return value

    @staticmethod
    def backward(ctx: Any, gv: torch.Tensor) -> tuple[Any, ...]:
        inputs = ctx.saved_tensors
        run = ctx.run
        ax = run.axis
        need = ctx.needs_input_grad[3:]
        if torch.is_grad_enabled():  # create_graph=True: the definition's gradient, differentiable
            gvb = gv if gv.ndim == 0 or ax is None else gv.unsqueeze(ax)
            diff = tuple(
                None if g is None or not n else _fit(g * gvb, s).to(dt)
                for g, n, s, dt in zip(
                    run.generic(*inputs), need, ctx.shapes, ctx.dtypes, strict=True
                )
            )
            return (None, None, None, *diff)
        grads: Any = ctx.grads
        owned = ctx.owned
        ctx.grads = (None,) * len(grads)  # hand the buffers over to autograd
        if all(g is None for g, n in zip(grads, need, strict=True) if n):  # retained graph
            with torch.no_grad():
                grads = run.compute(tuple(need))[1]
            owned = True
        res: list[Any] = []
        for g, n, s, dt in zip(grads, need, ctx.shapes, ctx.dtypes, strict=True):
            if g is None or not n:
                res.append(None)
                continue
            g = _fit(_scale(g, gv, ax, owned), s)
            res.append(g if g.dtype == dt else g.to(dt))
        return (None, None, None, *res)


def _fit(g: torch.Tensor, shape: Any) -> torch.Tensor:
    """``g`` summed over the axes an input was broadcast along."""
    return g if g.shape == shape else g.sum_to_size(shape)


def _scale(g: torch.Tensor, gv: torch.Tensor, axis: int | None, owned: bool) -> torch.Tensor:
    """``g`` times the incoming gradient (in place when the buffer is ours)."""
    gv = gv.detach()
    if gv.ndim == 0:
        if gv.device.type == "cpu" and float(gv) == 1.0:
            return g
        gv = gv.to(g.dtype)
        return g.mul_(gv) if owned else g * gv
    if axis is not None:
        gv = gv.unsqueeze(axis)
    gv = gv.to(g.dtype)
    return g.mul_(gv) if owned else g * gv


def _apply(run: _Run, inputs: tuple[Any, ...], want_grad: bool) -> tuple[Any, Any]:
    need = tuple(torch.is_grad_enabled() and bool(x.requires_grad) for x in inputs)
    out: list[Any] | None = [] if want_grad else None
    value = _SavedGrad.apply(run, need, out, *inputs)
    if out is None:
        return value, None
    return value, (out[0] if len(out) == 1 else tuple(out))


# --------------------------------------------------------------------------- softmax CE


def softmax_ce_rows(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    class_weights: torch.Tensor | None,
    sample_weights: torch.Tensor | None,
    options: CEOptions,
    reduction: str,
    want_grad: bool,
    rows: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reduced value and gradient of the reduction for ``(N, C)`` rows ``x`` (compute dtype),
    ``y`` ``(N,)`` indices (sparse) or ``(N, C)`` masses; the gradient is one new buffer.

    ``rows`` (sparse only): ``x`` is the caller's scratch and is turned into the gradient in
    place (no second N × C buffer); ``rows(index)`` recomputes the original rows ``x[index]``
    for the rare rows the definition must decide (the linear layer recomputes them from its
    inputs)."""
    o, cw, sw = options, class_weights, sample_weights
    eps, z = o.label_smoothing, o.z_loss
    n, c = x.shape
    zl = not (isinstance(z, (int, float)) and z == 0)
    x0 = x
    orig = (lambda i: x0[i]) if rows is None else rows  # the original rows (the definition caps)
    d_cap: Any = None
    if o.softcap is not None:  # the loss of c·tanh(x/c) (±inf kept, as the definition does);
        # the chain rule's 1 − tanh² = 1 / cosh² (no cancellation) multiplies the gradient
        zc = x / o.softcap
        inf = x.isinf()
        x = torch.tanh(zc, out=x) if rows is not None else torch.tanh(zc)
        x.mul_(o.softcap)
        if inf.any():
            x[inf] = x[inf] * _INF
        d_cap = zc.cosh_().square_().reciprocal_()
    m = x.amax(-1) if c else x.new_zeros(n)
    special = ~torch.isfinite(m)  # nan, +inf or all -inf rows: the definition's values
    ms = torch.where(special, torch.zeros_like(m), m)
    x_y: Any = None
    valid: Any = None
    if o.sparse:
        valid = (y != o.ignore_index) if o.ignore_index is not None else None
        idx = y if valid is None else torch.where(valid, y, torch.zeros_like(y))
        idx = idx.long()
        x_y = x.gather(1, idx[:, None])[:, 0]
    # x - m, then exp(x - m), then the gradient
    buf = x.sub_(ms[:, None]) if rows is not None else x - ms[:, None]
    wsum = float(c) if cw is None else cw.sum()
    if o.sparse:
        cw_y = None if cw is None else cw[idx]
        sd: Any = None
        if eps > 0:  # Σ_c w_c (x_c - m)
            sd = buf.sum(-1) if cw is None else buf @ cw
    else:
        t = y if cw is None else y * cw  # w_c y_c
        sd = torch.linalg.vecdot(t, buf)  # Σ_c w_c y_c (x_c - m)
        if eps > 0:
            sdc = buf.sum(-1) if cw is None else buf @ cw
            sd = (1 - eps) * sd + (eps / c) * sdc
    buf.exp_()
    s = buf.sum(-1)
    ls = torch.log(torch.where(s > 0, s, torch.ones_like(s)))
    tight = (s < 2) & ~special  # a confident row: log1p of the sum without the maximum
    ti = tight.nonzero()[:, 0]
    if ti.numel():
        at_max = buf[ti] == 1
        r = buf[ti].masked_fill_(at_max, 0).sum(-1)
        k = at_max.sum(-1).to(x.dtype)
        ls[ti] = torch.log1p((k - 1) + r)
    lse0 = ms + ls
    if o.sparse:
        coef = (1 - eps) if cw_y is None else (1 - eps) * cw_y
        ce = coef * ((ms - x_y) + ls)
        if eps > 0:
            ce = ce + (eps / c) * (ls * wsum - sd)
        w = torch.ones_like(ce) if cw_y is None else cw_y
        mass = (1 - eps) * w + (eps if cw is None else (eps / c) * wsum)
    else:
        mass = t.sum(-1)
        w = torch.ones_like(ls) if cw is None else mass
        if eps > 0:
            mass = (1 - eps) * mass + (eps / c) * wsum
        ce = ls * mass - sd
    loss = ce + z * lse0 * lse0 if zl else ce
    if sw is not None:
        loss, w = loss * sw, w * sw
    bad = special | ~torch.isfinite(loss)  # the definition decides these rows
    if valid is not None:
        loss = torch.where(valid, loss, torch.zeros_like(loss))
        w = torch.where(valid, w, torch.zeros_like(w))
    total = w.sum() if reduction == "mean" else None
    bi = bad.nonzero()[:, 0]
    if bi.numel():
        lb, _, gb = g_losses.softmax_ce_rows(
            _xp(),
            orig(bi),
            y[bi],
            class_weights=cw,
            sample_weights=None if sw is None else sw[bi],
            options=o,
            want_grad=want_grad,
        )
        loss = loss.index_put((bi,), lb)
    value = _reduce.reduce(_xp(), loss, total, reduction)
    if not want_grad:
        return value, None
    # the gradient of the reduction, formed in the buffer holding exp(x - m)
    rs = torch.ones_like(ls) if sw is None else sw.to(ls.dtype)
    if valid is not None:
        rs = torch.where(valid, rs, torch.zeros_like(rs))
    if total is not None:
        rs = rs * torch.where(total == 0, torch.zeros_like(total), 1 / total)
    rowf = mass + 2 * z * lse0 if zl else mass
    g = buf.mul_((rowf * rs / torch.where(s > 0, s, torch.ones_like(s)))[:, None])
    if o.sparse:
        if eps > 0:
            if cw is None:
                g.sub_(((eps / c) * rs)[:, None])
            else:
                g.addcmul_(rs[:, None], cw[None, :], value=-eps / c)
        # the target's rowf·q_y − cy as rowf·expm1(log q_y) + (rowf − cy) (accurate for q_y ≈ 1)
        cy = (1 - eps) * (torch.ones_like(ls) if cw_y is None else cw_y)
        gy = rowf * torch.expm1((x_y - ms) - ls) + (rowf - cy)
        if eps > 0:
            gy = gy - (eps / c) * (1.0 if cw_y is None else cw_y)
        g.scatter_(1, idx[:, None], (gy * rs)[:, None])
    else:
        g.addcmul_(t, rs[:, None], value=-(1 - eps))
        if eps > 0:
            if cw is None:
                g.sub_(((eps / c) * rs)[:, None])
            else:
                g.addcmul_(rs[:, None], cw[None, :], value=-eps / c)
        if ti.numel():  # the mode of a confident row: rowf·expm1(log q) + (rowf − w t)
            j = orig(ti).argmax(-1)
            wt = (1 - eps) * t[ti, j] + (eps / c) * (1.0 if cw is None else cw[j])
            lsj = ls[ti]
            gj = rowf[ti] * torch.expm1(-lsj) + (rowf[ti] - wt)
            g[ti, j] = gj * rs[ti]
    if d_cap is not None:
        g.mul_(d_cap)
    if bi.numel():
        assert gb is not None
        g[bi] = _reduce.scale_gradient(_xp(), gb, total, reduction)
    return value, g


def _xp() -> Any:
    from array_api_compat import torch as xp_torch

    return xp_torch


def _rows(spec: SoftmaxCE, logits: torch.Tensor) -> tuple[Any, ...]:
    """The spec's tensors as ``(N, C)`` rows with classes last, in the compute dtype."""
    ax = spec.axis
    x = logits.detach()
    if x.dtype != spec.compute_dtype:
        x = x.to(spec.compute_dtype)
    x = x.movedim(ax, -1)
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    y = spec.labels
    y2 = y.reshape(-1) if spec.options.sparse else y.movedim(ax, -1).reshape(-1, shape[-1])
    sw = None if spec.sample_weights is None else spec.sample_weights.reshape(-1)
    return x2, y2, sw, shape


def _ce_compute(spec: SoftmaxCE, logits: torch.Tensor) -> Callable[..., Any]:
    def compute(want: tuple[bool, ...]) -> tuple[torch.Tensor, tuple[Any, ...]]:
        x2, y2, sw, shape = _rows(spec, logits)
        value, g = softmax_ce_rows(
            x2,
            y2,
            class_weights=spec.class_weights,
            sample_weights=sw,
            options=spec.options,
            reduction=spec.reduction,
            want_grad=want[0],
        )
        if spec.reduction == "none":
            value = value.reshape(shape[:-1])
        value = value.to(logits.dtype)
        if g is not None:
            g = g.reshape(shape).movedim(-1, spec.axis)
        return value, (g,)

    return compute


def softmax_ce(spec: SoftmaxCE, want_grad: bool = False) -> tuple[Any, Any]:
    """Both softmax cross-entropies of torch tensors on any device (lean autograd)."""
    x = spec.logits

    def generic(logits: torch.Tensor) -> tuple[Any, ...]:
        s = dataclasses.replace(spec, logits=logits)
        return (g_losses.softmax_ce(s, True)[1],)

    ax = spec.axis if spec.reduction == "none" else None
    return _apply(_Run(_ce_compute(spec, x), generic, ax), (x,), want_grad)


# --------------------------------------------------------------------------- the others


def sigmoid_ce(spec: SigmoidCE, want_grad: bool = False) -> tuple[Any, Any]:
    """Sigmoid cross-entropy of torch tensors: the definition's value and gradient, computed
    without autograd, the gradient kept for the backward."""
    x = spec.logits

    def compute(want: tuple[bool, ...]) -> tuple[torch.Tensor, tuple[Any, ...]]:
        s = dataclasses.replace(spec, logits=x.detach())
        value, g = g_losses.sigmoid_ce(s, want[0])
        return value.to(x.dtype), (g,)

    def generic(logits: torch.Tensor) -> tuple[Any, ...]:
        return (g_losses.sigmoid_ce(dataclasses.replace(spec, logits=logits), True)[1],)

    return _apply(_Run(compute, generic, None), (x,), want_grad)


def softmax_measure(spec: SoftmaxMeasure, want_grad: bool = False) -> tuple[Any, Any]:
    """softmax_entropy / softmax_kl_divergence of torch tensors: the definition's value and
    analytic gradient(s), the gradients kept for the backward."""
    inputs = (spec.a,) if spec.b is None else (spec.a, spec.b)

    def replaced(*ts: torch.Tensor) -> SoftmaxMeasure:
        return dataclasses.replace(spec, a=ts[0], b=None if spec.b is None else ts[1])

    def compute(want: tuple[bool, ...]) -> tuple[torch.Tensor, tuple[Any, ...]]:
        value, g = g_measures.softmax_measure(replaced(*(t.detach() for t in inputs)), any(want))
        if g is None:
            return value, (None,) * len(inputs)
        grads = (g,) if spec.b is None else tuple(g)  # type: ignore[arg-type]
        return value, tuple(gi if w else None for gi, w in zip(grads, want, strict=True))

    def generic(*ts: torch.Tensor) -> tuple[Any, ...]:
        g = g_measures.softmax_measure(replaced(*ts), True)[1]
        return (g,) if spec.b is None else tuple(g)  # type: ignore[arg-type]

    ax = None if spec.keepdims or spec.reduction != "none" else spec.axis
    return _apply(_Run(compute, generic, ax), inputs, want_grad)


# --------------------------------------------------------------------------- linear layer


def _linear_sweep(
    spec: LinearCE, hidden: Any, weight: Any, bias: Any, need: tuple[bool, ...]
) -> tuple[torch.Tensor, tuple[Any, ...]]:
    """The loss and the three gradients in one chunked sweep (as the fused CPU path does): each
    chunk's logits are turned into their gradient in place, then ``d_hidden`` for the chunk and
    the ``d_weight``/``d_bias`` accumulations follow; one chunk of logits exists at a time."""
    cd = spec.hidden.dtype
    h = hidden.detach().reshape(spec.hidden.shape).to(cd)
    w = weight.detach().to(cd)
    b = None if bias is None else bias.detach().to(cd)
    y, cw, o = spec.labels, spec.class_weights, spec.options
    n, chunk = int(h.shape[0]), spec.chunk_rows
    mean = spec.reduction == "mean"
    sw = spec.sample_weights
    total = g_linear.weight_total(_xp(), y, cw, o.ignore_index, cd, sw) if mean else None
    scale = None if total is None else torch.where(total == 0, torch.zeros_like(total), 1 / total)
    want = any(need)
    dh = torch.empty_like(h) if want and need[0] else None
    dw = torch.zeros_like(w) if want and need[1] else None
    db = torch.zeros_like(b) if want and b is not None and need[2] else None
    wt = w.T
    loss = h.new_zeros(())
    for start in range(0, n, chunk):
        hk, yk = h[start : start + chunk], y[start : start + chunk]
        logits = hk @ wt if b is None else torch.addmm(b, hk, wt)

        def rows(i: torch.Tensor, hk: Any = hk) -> torch.Tensor:
            return hk[i] @ wt if b is None else torch.addmm(b, hk[i], wt)

        value_k, g = softmax_ce_rows(
            logits,
            yk,
            class_weights=cw,
            sample_weights=None if sw is None else sw[start : start + chunk],
            options=o,
            reduction="sum",
            want_grad=want,
            rows=rows,
        )
        loss = loss + value_k
        if g is None:
            continue
        if scale is not None:
            g.mul_(scale)
        if dh is not None:
            torch.matmul(g, w, out=dh[start : start + chunk])
        if dw is not None:
            dw.addmm_(g.T, hk)
        if db is not None:
            db.add_(g.sum(0))
        del g, logits
    value = loss if scale is None else loss * scale
    grads = (
        None if dh is None else dh.reshape(spec.hidden_shape).to(spec.dtypes[0]),
        None if dw is None else dw.to(spec.dtypes[1]),
        None if db is None else db.to(spec.dtypes[2]),
    )
    return value.to(spec.dtypes[0]), grads


def linear_ce(spec: LinearCE, want_grad: bool = False) -> tuple[Any, Any]:
    """``linear_cross_entropy`` ("sum"/"mean") of torch tensors on any device: the chunked sweep
    computes the loss and the gradients in the forward; the backward scales them."""
    originals = tuple(t for t in spec.originals if t is not None)
    has_bias = spec.originals[2] is not None

    def split(ts: tuple[Any, ...]) -> tuple[Any, Any, Any]:
        return ts[0], ts[1], ts[2] if has_bias else None

    def compute(want: tuple[bool, ...]) -> tuple[torch.Tensor, tuple[Any, ...]]:
        need = (*want, False) if not has_bias else want
        value, grads = _linear_sweep(spec, *split(originals), need)
        return value, grads[: len(originals)]

    def generic(*ts: torch.Tensor) -> tuple[Any, ...]:
        h, w, b = split(ts)
        s = dataclasses.replace(
            spec,
            hidden=h.reshape(spec.hidden.shape).to(spec.hidden.dtype),
            weight=w.to(spec.weight.dtype),
            bias=None if b is None else b.to(spec.hidden.dtype),
        )
        _, grads, _ = g_linear.linear_ce(s, True)
        assert grads is not None
        dh, dw, db = grads
        return (dh.reshape(spec.hidden_shape), dw, db)[: len(ts)]

    value, grads = _apply(_Run(compute, generic, None), originals, want_grad)
    if grads is not None:
        grads = grads if isinstance(grads, tuple) else (grads,)
        grads = (*grads, None) if not has_bias else grads
    return value, grads
