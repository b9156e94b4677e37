"""Compiled loops for convolution and pooling (numba): im2col, col2im, max and average pooling; the chunked
convolution's per-thread parts (``_conv_forward_part``, ``_conv_backward_part``: unfolding and NumPy's own
OpenBLAS GEMM, called by address, in one GIL-free call); and the spinning wait of the hand-offs to
gradbox's worker threads (``_post_and_wait``, used by ``_blas.run_parts``).

Imported by ``gradbox.nn._conv_functional`` on the first convolution or pooling call, and only when
numba is installed (``pip install "gradbox[fast]"``) and not switched off (``GRADBOX_FAST=0`` or
``gradbox.nn.functional.use_fast_kernels(False)``); ``import gradbox`` never loads it.

Each kernel computes what the NumPy path computes, element by element, without the strided views: padding
is a bounds test (or, for a stride-1 unfolding, a padded copy first). Sums are taken in the
same order as the NumPy path's loops (window offset by window offset), so results agree to the
last bit in most cases and always to float32 rounding (tested).

NOTE: indices are cast to ``np.uintp`` (unsigned: no negative-index wraparound check, 3-4x faster
loops), and the kernels are serial: ``parallel=True`` threads fought OpenBLAS's for the 2 cores. They
release the GIL, so that the chunked convolution can run them on several threads of its own.
"""
import platform

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from . import _blas
from .nn._conv_functional import _SCRATCH, _argmax_dtype, _tiles
from .nn._conv_functional import conv_output_size as _out

# NOTE: nogil: the chunked convolution (nn._conv_functional, "chunks") runs im2col and col2im on two
# Python threads at once
_jit = numba.njit(cache=True, error_model="numpy", boundscheck=False, nogil=True)


@_jit
def _valid(o_size, k, s, p, size):
    """The output positions [lo, hi) whose input index o·s + k - p lies inside [0, size)."""
    lo = 0
    while lo < o_size and lo * s + k - p < 0:
        lo += 1
    hi = o_size
    while hi > lo and (hi - 1) * s + k - p >= size:
        hi -= 1
    return lo, hi


@_jit
def _im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, cols):
    n, c, h, w = x.shape
    L = oh * ow
    for ci in range(c):
        for i in range(kh):
            ylo, yhi = _valid(oh, i, sh, ph, h)
            for j in range(kw):
                xlo, xhi = _valid(ow, j, sw, pw, w)
                row = cols[(ci * kh + i) * kw + j]
                for ni in range(n):
                    img = x[ni, ci]
                    base = ni * L
                    for oy in range(oh):
                        dst = base + oy * ow
                        if oy < ylo or oy >= yhi:
                            for ox in range(ow):
                                row[np.uintp(dst + ox)] = 0
                            continue
                        src = img[np.uintp(oy * sh + i - ph)]
                        for ox in range(xlo):
                            row[np.uintp(dst + ox)] = 0
                        # NOTE: the interior without bounds tests: a plain strided copy LLVM can vectorise
                        for ox in range(xlo, xhi):
                            row[np.uintp(dst + ox)] = src[np.uintp(ox * sw + j - pw)]
                        for ox in range(xhi, ow):
                            row[np.uintp(dst + ox)] = 0


@intrinsic
def _move8(typingctx, dst, i, src, j):
    """``dst.flat[i:i + 8] = src.flat[j:j + 8]`` as one unaligned vector load and one store (C-contiguous
    arrays of one dtype; no bounds test: the caller keeps both runs inside their arrays).

    NOTE: why not a loop: LLVM vectorises a copy loop 8 wide and 4 deep, so a run shorter than 32 elements
    (every run of the stride-1 unfolding below: OW is 10-32 in the benchmark nets) went through its scalar
    remainder loop, about one element a cycle (5 ns a run; BENCHMARKS.md, "Convolutions, seventh session")."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array) and dst.dtype == src.dtype):
        return None

    def codegen(context, builder, signature, args):
        d, di, s, si = args
        dst_ptr = context.make_array(signature.args[0])(context, builder, d).data
        src_ptr = context.make_array(signature.args[2])(context, builder, s).data
        vec = ir.VectorType(context.get_data_type(signature.args[0].dtype), 8).as_pointer()
        value = builder.load(builder.bitcast(builder.gep(src_ptr, [si]), vec), align=1)
        builder.store(value, builder.bitcast(builder.gep(dst_ptr, [di]), vec), align=1)
        return context.get_dummy_value()

    return types.void(dst, i, src, j), codegen


@_jit
def _pad_into(x, ph, pw, xp):
    """``xp`` (N, C, H + 2ph, W + 2pw) = x with zero borders."""
    n, c, h, w = x.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    xf, pf = x.reshape(-1), xp.reshape(-1)
    for p in range(n * c):
        d0 = p * hp * wp
        for t in range(ph * wp):
            pf[np.uintp(d0 + t)] = 0
        for y in range(h):
            d = d0 + (y + ph) * wp
            s = (p * h + y) * w
            for t in range(pw):
                pf[np.uintp(d + t)] = 0
            for t in range(w):
                pf[np.uintp(d + pw + t)] = xf[np.uintp(s + t)]
            for t in range(pw):
                pf[np.uintp(d + pw + w + t)] = 0
        for t in range((h + ph) * wp, hp * wp):
            pf[np.uintp(d0 + t)] = 0


@_jit
def _im2col_stride1(xp, kh, kw, oh, ow, cols):
    """``_im2col`` for stride 1 from the padded input: every run is OW elements of one padded row, no
    bounds tests, copied in vector moves of 8 (``_move8``), the last ending at the run's end (it may
    overlap the one before: a copy can write an element twice)."""
    n, c, hp, wp = xp.shape
    L = oh * ow
    xf = xp.reshape(-1)
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                row = cols[(ci * kh + i) * kw + j]
                for ni in range(n):
                    s0 = ((ni * c + ci) * hp + i) * wp + j
                    d0 = ni * L
                    for oy in range(oh):
                        dst = d0 + oy * ow
                        src = s0 + oy * wp
                        if ow >= 8:
                            k = 0
                            while k + 8 < ow:
                                _move8(row, dst + k, xf, src + k)
                                k += 8
                            _move8(row, dst + ow - 8, xf, src + ow - 8)
                        else:
                            for t in range(ow):
                                row[np.uintp(dst + t)] = xf[np.uintp(src + t)]


# --- the hand-off to gradbox's worker threads (_blas.run_parts) ------------------------------------------
@intrinsic
def _store_release(typingctx, flags, i, value):
    """``flags[i] = value`` (an int64 array), a release store: what was written before is seen first."""
    def codegen(context, builder, signature, args):
        ptr = builder.gep(context.make_array(signature.args[0])(context, builder, args[0]).data, [args[1]])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(flags, i, value), codegen


# NOTE: x86 only: its cycle counter (rdtsc) and pause. Elsewhere the spin counts its looks: LLVM's cycle
# counter on AArch64 reads a register Linux does not let user code read (SIGILL)
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")


@intrinsic
def _spin_until(typingctx, flags, i, value, cycles, yield_address):
    """Spin until ``flags[i] == value`` (acquire loads), at most ``cycles`` ticks of the CPU's cycle counter
    (``llvm.readcyclecounter``; not on x86: ``cycles / 1024`` looks); True when seen. Between looks the C
    function at ``yield_address`` (libc's ``sched_yield``: another thread that wants this core gets it) or,
    at address 0, x86 ``pause``."""
    def codegen(context, builder, signature, args):
        ptr = builder.gep(context.make_array(signature.args[0])(context, builder, args[0]).data, [args[1]])
        i64 = ir.IntType(64)
        limit = context.cast(builder, args[3], signature.args[3], types.int64)
        if _X86:
            clock = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=ir.FunctionType(i64, []))
            start = builder.call(clock, [])
        else:
            looks = cgutils.alloca_once_value(builder, ir.Constant(i64, 0))
            limit = builder.lshr(limit, ir.Constant(i64, 10))
        look, wait, end = (builder.append_basic_block(name) for name in ("spin.look", "spin.wait", "spin.end"))
        builder.branch(look)
        builder.position_at_end(look)
        seen = builder.icmp_signed("==", builder.load_atomic(ptr, "acquire", 8), args[2])
        builder.cbranch(seen, end, wait)
        builder.position_at_end(wait)
        address = context.cast(builder, args[4], signature.args[4], types.int64)
        with builder.if_else(builder.icmp_unsigned("!=", address, ir.Constant(i64, 0))) as (call, pause):
            with call:
                builder.call(builder.inttoptr(address, ir.FunctionType(ir.IntType(32), []).as_pointer()), [])
            with pause:
                if _X86:
                    builder.call(builder.module.declare_intrinsic("llvm.x86.sse2.pause",
                                                                  fnty=ir.FunctionType(ir.VoidType(), [])), [])
        if _X86:
            spent = builder.sub(builder.call(clock, []), start)
        else:
            spent = builder.add(builder.load(looks), ir.Constant(i64, 1))
            builder.store(spent, looks)
        late = builder.icmp_unsigned(">=", spent, limit)
        timed_out = builder.block
        builder.cbranch(late, end, look)
        builder.position_at_end(end)
        result = builder.phi(ir.IntType(1))
        result.add_incoming(ir.Constant(ir.IntType(1), 1), look)
        result.add_incoming(ir.Constant(ir.IntType(1), 0), timed_out)
        return result

    return types.boolean(flags, i, value, cycles, yield_address), codegen


@_jit
def _post_and_wait(flags, post_at, post_value, wait_at, wait_value, cycles, yield_address):
    """``flags[post_at] = post_value`` (none when ``post_at`` < 0), then spin for ``flags[wait_at] ==
    wait_value``, at most ``cycles``, yielding the core between looks (``_spin_until``); True when seen.
    Holds no GIL: the store comes after this thread let go of it, so the thread that sees it takes the GIL
    without waiting (``_blas._Worker``)."""
    if post_at >= 0:
        _store_release(flags, post_at, post_value)
    return _spin_until(flags, wait_at, wait_value, cycles, yield_address)


@intrinsic
def _gemm(typingctx, address, trans_a, trans_b, m, n, k, a, a_at, lda, b, b_at, ldb, beta, c, c_at, ldc):
    """``C = op(A)·op(B) + beta·C`` through the C function at ``address``: NumPy's OpenBLAS ``cblas_sgemm``
    or ``cblas_dgemm`` (row major, 64-bit integers; ``_blas.gemm_address``). A, B, C are C-contiguous
    arrays of one dtype, each read from element ``*_at`` of its flat data; ``trans_*`` 111 (no) or 112 (yes).

    NOTE: why call the library from compiled code: a chunk's products issued from Python take the GIL
    between every call, and two threads each waiting for it (a futex wake of an idle vCPU: ~20 us here)
    ate the second core's gain at small batches (BENCHMARKS.md, "Convolutions, seventh session")."""
    if not (all(isinstance(t, types.Array) for t in (a, b, c)) and a.dtype == b.dtype == c.dtype):
        return None

    def codegen(context, builder, signature, args):
        ts = signature.args
        elt = context.get_data_type(ts[6].dtype)
        i32, i64 = ir.IntType(32), ir.IntType(64)
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, elt, elt.as_pointer(), i64,
                                               elt.as_pointer(), i64, elt, elt.as_pointer(), i64])

        def arg(i, to):
            return context.cast(builder, args[i], ts[i], to)

        def data(i, at):
            return builder.gep(context.make_array(ts[i])(context, builder, args[i]).data, [arg(at, types.int64)])

        fn = builder.inttoptr(arg(0, types.int64), fnty.as_pointer())
        one = context.get_constant(ts[6].dtype, 1.0)
        builder.call(fn, [ir.Constant(i32, 101), arg(1, types.int32), arg(2, types.int32),  # 101: row major
                          arg(3, types.int64), arg(4, types.int64), arg(5, types.int64), one,
                          data(6, 7), arg(8, types.int64), data(9, 10), arg(11, types.int64),
                          arg(12, ts[6].dtype), data(13, 14), arg(15, types.int64)])
        return context.get_dummy_value()

    sig = types.void(address, trans_a, trans_b, m, n, k, a, a_at, lda, b, b_at, ldb, beta, c, c_at, ldc)
    return sig, codegen


_NO, _T = 111, 112  # CBLAS_TRANSPOSE


@_jit
def _unfold_chunk(x, kh, kw, sh, sw, ph, pw, oh, ow, cols, work):
    """im2col of ``x`` (nb, C, H, W) into ``cols``; with stride 1 and padding the padded copy goes into
    ``work`` (at least nb·C·Hp·Wp elements).

    NOTE: stride 1 pads first (4-13% of the unfolding's time): the runs then need no bounds tests and move
    8 elements at a time, 1.6-2x faster in all (BENCHMARKS.md, "Convolutions, seventh session")."""
    if sh == 1 and sw == 1:
        if ph or pw:
            nb, c, h, w = x.shape
            xp = work[:nb * c * (h + 2 * ph) * (w + 2 * pw)].reshape(nb, c, h + 2 * ph, w + 2 * pw)
            _pad_into(x, ph, pw, xp)
            _im2col_stride1(xp, kh, kw, oh, ow, cols)
        else:
            _im2col_stride1(x, kh, kw, oh, ow, cols)
    else:
        _im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, cols)


@_jit
def _conv_forward_part(gemm, x, w2, b, out, buf, chunks, kh, kw, sh, sw, ph, pw, oh, ow, pkh, pkw, zp, pout, parg,
                       flags, post):
    """One thread's share of the chunked convolution's forward, all in compiled code: for each chunk [a, e)
    of ``chunks`` (k, 2), unfold it into ``buf`` and write ``Z = W·cols + b`` image by image into ``out``
    (N, out, OH·OW): what ``_conv_functional._conv_forward_chunks`` does from Python. ``b`` empty: no bias.
    ``pkh`` > 0: then max-pool the chunk's planes of Z (``zp``, the same array as (N·out, OH, OW)) over tiling
    pkh x pkw windows into ``pout`` and their argmax into ``parg`` (N·out, POH, POW), while they are in cache.
    ``post`` > 0: first ``flags[0] = post``, the hand-off to the worker (``_blas.run_parts(posting=True)``)."""
    if post > 0:
        _store_release(flags, 0, post)
    o, rows = w2.shape
    L = oh * ow
    wf, zf = w2.reshape(-1), out.reshape(-1)
    for q in range(chunks.shape[0]):
        a, e = chunks[q, 0], chunks[q, 1]
        m = (e - a) * L
        cols = buf[:rows * m].reshape(rows, m)
        _unfold_chunk(x[a:e], kh, kw, sh, sw, ph, pw, oh, ow, cols, buf[(rows + o) * m:])
        for i in range(e - a):
            at = (a + i) * o * L
            # Z_i (out, L) = W (out, rows) · cols_i (rows, L): one product per image straight into NCHW
            _gemm(gemm, _NO, _NO, o, L, rows, wf, 0, rows, buf, i * L, m, 0.0, zf, at, L)
            if b.size:
                for oc in range(o):
                    z, bias = zf[at + oc * L:at + (oc + 1) * L], b[oc]
                    for t in range(L):
                        z[np.uintp(t)] += bias
        if pkh > 0:
            _pool_tiles(zp[a * o:e * o], pkh, pkw, pout[a * o:e * o], parg[a * o:e * o])


@numba.njit(cache=True, error_model="numpy", boundscheck=False, nogil=True, fastmath={"reassoc"})
def _sum64(d):
    """Σ d in float64 (for float32 terms too), in the order LLVM's vectorised loop takes.

    NOTE: without ``reassoc`` the sum is one chain of dependent adds, each waiting about 4 cycles for the one
    before (LLVM may not reorder floating-point adds): LeNet's first conv took 60 µs a thread for its db alone
    at batch 32; eight interleaved scalar sums took 27, the vectorised loop 11 (BENCHMARKS.md, "Convolutions,
    eighth session"). The flag is on this loop only; the order is fixed for a given machine and build, so
    runs repeat to the bit."""
    acc = 0.0
    for t in range(d.shape[0]):
        acc += d[np.uintp(t)]
    return acc


@_jit
def _conv_backward_part(gemm, g, x, w2, gw, gb, gx, buf, chunks, kh, kw, sh, sw, ph, pw, oh, ow, per_image,
                        pkh, pkw, gz, gp, parg, flags, post):
    """One thread's share of the chunked convolution's backward, all in compiled code, for the chunks
    [a, e) of ``chunks``: each chunk unfolded again into ``buf``; dW summed into ``gw`` (empty: no dW), ``db +=
    Σ dZ`` (``gb``; empty: none), ``dcols_i = Wᵀ·dZ_i`` image by image then col2im into ``gx`` (empty: no dX).
    ``g`` is (N, out, OH·OW), C-contiguous. dW as the Python loop takes it (``_backward_chunks_python``):
    ``per_image``, ``gw`` (out, rows) += dZ_i·cols_iᵀ; else ``gw`` holds dWᵀ (rows, out) += cols·dZᵀ, one
    product over the chunk from dZ copied to (out, nb·OH·OW). ``pkh`` > 0: the forward pooled Z (see
    ``_conv_forward_part``); each chunk's dZ is first written into ``g`` (``gz``, the same array as
    (N·out, OH, OW)) from the pooled gradient ``gp`` and the argmax ``parg``. ``flags``, ``post``: as the
    forward's."""
    if post > 0:
        _store_release(flags, 0, post)
    o, rows = w2.shape
    L = oh * ow
    wf, gf, gwf = w2.reshape(-1), g.reshape(-1), gw.reshape(-1)
    for q in range(chunks.shape[0]):
        a, e = chunks[q, 0], chunks[q, 1]
        if pkh > 0:
            _unpool_tiles(gp[a * o:e * o], parg[a * o:e * o], pkh, pkw, gz[a * o:e * o])
        m = (e - a) * L
        cols = buf[:rows * m].reshape(rows, m)
        if gw.size:
            _unfold_chunk(x[a:e], kh, kw, sh, sw, ph, pw, oh, ow, cols, buf[(rows + o) * m:])
            if per_image:
                for i in range(e - a):
                    _gemm(gemm, _NO, _T, o, rows, L, gf, (a + i) * o * L, L, buf, i * L, m, 1.0, gwf, 0, rows)
            else:
                dz = buf[rows * m:(rows + o) * m]
                for i in range(e - a):
                    for oc in range(o):
                        src, dst = gf[((a + i) * o + oc) * L:], dz[oc * m + i * L:]
                        for t in range(L):
                            dst[np.uintp(t)] = src[np.uintp(t)]
                _gemm(gemm, _NO, _T, rows, o, m, buf, 0, m, buf, rows * m, m, 1.0, gwf, 0, o)
        if gb.size:
            for i in range(a, e):
                for oc in range(o):
                    gb[oc] += _sum64(gf[(i * o + oc) * L:(i * o + oc + 1) * L])
        if gx.size:
            for i in range(e - a):
                _gemm(gemm, _T, _NO, rows, L, o, wf, 0, rows, gf, (a + i) * o * L, L, 0.0, buf, i * L, m)
            _col2im(cols, kh, kw, sh, sw, ph, pw, oh, ow, gx[a:e])


@_jit
def _col2im(cols, kh, kw, sh, sw, ph, pw, oh, ow, dx):
    n, c, h, w = dx.shape
    L = oh * ow
    for ci in range(c):
        for i in range(kh):
            ylo, yhi = _valid(oh, i, sh, ph, h)
            for j in range(kw):
                xlo, xhi = _valid(ow, j, sw, pw, w)
                row = cols[(ci * kh + i) * kw + j]
                for ni in range(n):
                    img = dx[ni, ci]
                    base = ni * L
                    for oy in range(ylo, yhi):
                        dst = img[np.uintp(oy * sh + i - ph)]
                        src = base + oy * ow
                        for ox in range(xlo, xhi):
                            dst[np.uintp(ox * sw + j - pw)] += row[np.uintp(src + ox)]


@_jit
def _max_pool(x, kh, kw, sh, sw, ph, pw, out, arg):
    # x (planes, H, W), out and arg (planes, OH, OW); arg holds the winning offset k = i·kw + j in
    # the window (as the NumPy path stores it), the first maximum in row-major order on ties
    planes, h, w = x.shape
    oh, ow = out.shape[1], out.shape[2]
    for p in range(planes):
        img = x[p]
        for oy in range(oh):
            y0 = oy * sh - ph
            for ox in range(ow):
                x0 = ox * sw - pw
                best = img[np.uintp(max(y0, 0)), np.uintp(max(x0, 0))]  # the window's first real pixel
                where = (max(y0, 0) - y0) * kw + max(x0, 0) - x0
                for i in range(kh):
                    iy = y0 + i
                    if iy < 0 or iy >= h:
                        continue
                    row = img[np.uintp(iy)]
                    for j in range(kw):
                        ix = x0 + j
                        if ix >= 0 and ix < w:
                            v = row[np.uintp(ix)]
                            # NOTE: strictly greater: the first maximum in row-major order wins ties, as PyTorch
                            if v > best:
                                best = v
                                where = i * kw + j
                out[p, np.uintp(oy), np.uintp(ox)] = best
                arg[p, np.uintp(oy), np.uintp(ox)] = where


@_jit
def _max_pool_tiled(x, k_h, k_w, out, arg):
    """Windows that tile the input (stride = kernel, no padding): no bounds tests at all."""
    planes = x.shape[0]
    oh, ow = out.shape[1], out.shape[2]
    for p in range(planes):
        img = x[p]
        o = out[p]
        a = arg[p]
        for oy in range(oh):
            for ox in range(ow):
                best = img[np.uintp(oy * k_h), np.uintp(ox * k_w)]
                where = 0
                for i in range(k_h):
                    row = img[np.uintp(oy * k_h + i)]
                    for j in range(k_w):
                        v = row[np.uintp(ox * k_w + j)]
                        if v > best:
                            best = v
                            where = i * k_w + j
                o[np.uintp(oy), np.uintp(ox)] = best
                a[np.uintp(oy), np.uintp(ox)] = where


@_jit
def _max_pool_2x2(x, out, arg):
    """The common 2x2, stride 2 pool written out: the four compares unrolled (10x the generic tiling
    loop's speed at the CIFAR net's first pool: 0.18 against 2.1 ms)."""
    planes = x.shape[0]
    oh, ow = out.shape[1], out.shape[2]
    for p in range(planes):
        for oy in range(oh):
            r0, r1 = x[p, np.uintp(2 * oy)], x[p, np.uintp(2 * oy + 1)]
            o, a = out[p, np.uintp(oy)], arg[p, np.uintp(oy)]
            for ox in range(ow):
                c = np.uintp(2 * ox)
                best, k = r0[c], 0
                if r0[c + 1] > best:
                    best, k = r0[c + 1], 1
                if r1[c] > best:
                    best, k = r1[c], 2
                if r1[c + 1] > best:
                    best, k = r1[c + 1], 3
                o[np.uintp(ox)] = best
                a[np.uintp(ox)] = k


@_jit
def _zero(dx):
    """dx[...] = 0 for a C-contiguous array, as one loop over one array (which LLVM vectorises)."""
    flat = dx.reshape(-1)
    for j in range(flat.shape[0]):
        flat[j] = 0


@_jit
def _max_pool_2x2_backward(g, arg, dx):
    """dx zeroed, then each output's gradient stored at its window's winner (offset k: row k >> 1, column
    k & 1): a vectorised zeroing and one store per output.
    NOTE: the four selects per output this replaces (g or 0 into each pixel of the window) were scalar
    stores: 72 -> 41 µs alone at LeNet's first pool at batch 32, 926 -> 507 µs at the CIFAR-shaped net's
    (BENCHMARKS.md, "Convolutions, ninth session")."""
    _zero(dx)
    planes, oh, ow = g.shape
    for p in range(planes):
        for oy in range(oh):
            gr, a = g[p, np.uintp(oy)], arg[p, np.uintp(oy)]
            for ox in range(ow):
                k = a[ox]
                dx[p, np.uintp(2 * oy + (k >> 1)), np.uintp(2 * ox + (k & 1))] = gr[ox]


@_jit
def _max_pool_backward(g, arg, kh, kw, sh, sw, ph, pw, dx):
    # dx (planes, H, W) zeroed; each output's gradient goes to its window's winning input
    planes, oh, ow = g.shape
    for p in range(planes):
        for oy in range(oh):
            for ox in range(ow):
                k = arg[p, np.uintp(oy), np.uintp(ox)]
                iy = oy * sh + k // kw - ph
                ix = ox * sw + k % kw - pw
                dx[p, np.uintp(iy), np.uintp(ix)] += g[p, np.uintp(oy), np.uintp(ox)]


@_jit
def _max_pool_backward_tiled(g, arg, k_h, k_w, dx):
    """Tiling windows (stride = kernel, no padding): dx zeroed (the rows and columns no window reaches
    included), then each output's gradient stored at its window's winner, as the 2x2 kernel does."""
    _zero(dx)
    planes, oh, ow = g.shape
    for p in range(planes):
        for oy in range(oh):
            for ox in range(ow):
                k = arg[p, np.uintp(oy), np.uintp(ox)]
                dx[p, np.uintp(oy * k_h + k // k_w), np.uintp(ox * k_w + k % k_w)] = g[p, np.uintp(oy), np.uintp(ox)]


@_jit
def _pool_tiles(x, k_h, k_w, out, arg):
    """Max pooling over tiling k_h x k_w windows of the planes ``x``: the kernels ``max_pool`` picks for them."""
    if k_h == 2 and k_w == 2:
        _max_pool_2x2(x, out, arg)
    else:
        _max_pool_tiled(x, k_h, k_w, out, arg)


@_jit
def _unpool_tiles(g, arg, k_h, k_w, dx):
    """The backward of ``_pool_tiles`` into ``dx`` (every element written): as ``max_pool_backward``'s."""
    if k_h == 2 and k_w == 2:
        _max_pool_2x2_backward(g, arg, dx)
    else:
        _max_pool_backward_tiled(g, arg, k_h, k_w, dx)


@_jit
def _avg_pool(x, kh, kw, sh, sw, ph, pw, scale, out):
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    for ni in range(n):
        for ci in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    s = scale * 0  # NOTE: a zero of the array's dtype
                    for i in range(kh):
                        iy = oy * sh + i - ph
                        if iy < 0 or iy >= h:
                            continue
                        for j in range(kw):
                            ix = ox * sw + j - pw
                            if ix >= 0 and ix < w:
                                s += x[np.uintp(ni), np.uintp(ci), np.uintp(iy), np.uintp(ix)]
                    out[ni, ci, oy, ox] = s * scale


@_jit
def _avg_pool_backward(g, kh, kw, sh, sw, ph, pw, scale, dx):
    n, c, oh, ow = g.shape
    h, w = dx.shape[2], dx.shape[3]
    for ni in range(n):
        for ci in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    share = g[ni, ci, oy, ox] * scale
                    for i in range(kh):
                        iy = oy * sh + i - ph
                        if iy < 0 or iy >= h:
                            continue
                        for j in range(kw):
                            ix = ox * sw + j - pw
                            if ix >= 0 and ix < w:
                                dx[np.uintp(ni), np.uintp(ci), np.uintp(iy), np.uintp(ix)] += share


@_jit
def _relu_backward(out, g, res):
    # NOTE: the mask times g, as ReLU's NumPy backward computes it (so 0·inf is NaN in both): the same bits
    for i in range(res.size):
        res[i] = g[i] * (out[i] > 0)


def relu_backward(out, g):
    """ReLU's backward in one pass: ``g·(out > 0)``, the NumPy path's three (compare, cast, multiply) fused;
    shared among gradbox's threads by ranges when large (``_blas.pass_threads``). C-contiguous arrays."""
    res = np.empty_like(g)
    o, gg, r = out.reshape(-1), g.reshape(-1), res.reshape(-1)
    _blas.run_pass(lambda a, b: _relu_backward(o[a:b], gg[a:b], r[a:b]), r.size, g.nbytes)
    return res


def im2col(x, kernel, stride, padding, cols=None, work=None):
    """cols (C·kh·kw, N·OH·OW) of ``x``; into ``cols`` when given (C-contiguous, that shape). With stride 1
    and padding, the padded input goes into ``work`` when given (at least N·C·Hp·Wp elements)."""
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = _out(h, kh, sh, ph), _out(w, kw, sw, pw)
    if cols is None:
        cols = _SCRATCH.take((c * kh * kw, n * oh * ow), x.dtype)
    size = n * c * (h + 2 * ph) * (w + 2 * pw) if (sh, sw) == (1, 1) and (ph or pw) else 0  # the padded copy
    if work is None or work.size < size:
        work = np.empty(size, x.dtype)
    _unfold_chunk(x, kh, kw, sh, sw, ph, pw, oh, ow, cols, work)
    return cols


def col2im(cols, x_shape, kernel, stride, padding, dx=None, work=None):
    """The adjoint of ``im2col``: a new (N, C, H, W) array, or added into ``dx`` when given (``work``:
    as in ``im2col``)."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = _out(h, kh, sh, ph), _out(w, kw, sw, pw)
    if dx is None:
        dx = np.zeros((n, c, h, w), dtype=cols.dtype)
    _col2im(np.ascontiguousarray(cols), kh, kw, sh, sw, ph, pw, oh, ow, dx)
    return dx


def max_pool(x, kernel, stride, padding):
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    out = np.empty((n, c, _out(h, kh, sh, ph), _out(w, kw, sw, pw)), dtype=x.dtype)
    arg = np.empty(out.shape, dtype=_argmax_dtype(kernel))  # NOTE: the window offset, as the NumPy path keeps it
    # the kernels see (planes, H, W): one plane per (sample, channel)
    xs, outs, args = x.reshape(n * c, h, w), out.reshape(n * c, *out.shape[2:]), arg.reshape(n * c, *out.shape[2:])
    tiles = _tiles(kernel, stride, padding)

    def planes(a, b):
        if tiles:  # NOTE: the same kernels the fused convolution's parts pool with (_conv_forward_part)
            _pool_tiles(xs[a:b], kh, kw, outs[a:b], args[a:b])
        else:
            _max_pool(xs[a:b], kh, kw, sh, sw, ph, pw, outs[a:b], args[a:b])

    _blas.run_pass(planes, n * c, x.nbytes)
    return out, arg


def max_pool_backward(g, arg, x_shape, kernel, stride, padding):
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    g = np.ascontiguousarray(g)
    oh, ow = g.shape[2], g.shape[3]
    gs, args = g.reshape(n * c, oh, ow), arg.reshape(n * c, oh, ow)
    if _tiles(kernel, stride, padding):
        dx = np.empty(x_shape, dtype=g.dtype)  # NOTE: zeroed by the kernels, each its range of planes
        dxs = dx.reshape(n * c, h, w)
        _blas.run_pass(lambda a, b: _unpool_tiles(gs[a:b], args[a:b], kh, kw, dxs[a:b]), n * c, dx.nbytes)
        return dx
    dx = np.zeros(x_shape, dtype=g.dtype)
    dxs = dx.reshape(n * c, h, w)
    _blas.run_pass(lambda a, b: _max_pool_backward(gs[a:b], args[a:b], kh, kw, sh, sw, ph, pw, dxs[a:b]), n * c,
                   dx.nbytes)
    return dx


def avg_pool(x, kernel, stride, padding):
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    out = np.empty((n, c, _out(h, kh, sh, ph), _out(w, kw, sw, pw)), dtype=x.dtype)
    _avg_pool(x, kh, kw, sh, sw, ph, pw, x.dtype.type(1.0 / (kh * kw)), out)
    return out


def avg_pool_backward(g, x_shape, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    dx = np.zeros(x_shape, dtype=g.dtype)
    _avg_pool_backward(np.ascontiguousarray(g), kh, kw, sh, sw, ph, pw, g.dtype.type(1.0 / (kh * kw)), dx)
    return dx
