#!/usr/bin/env python3
# Model of PagedDecodeKernel + DecodeCombineKernel (kernels/attention_decode.cuh) in float64:
# split ranges, tile loads through the block table, the warp-per-head softmax, the per-thread
# output layout and the split merge, against dense attention. Run without a GPU:
#   python3 kernels/sim/decode_splits.py   (numpy)
# Keep it in step with the kernel.
import numpy as np, math
rng = np.random.default_rng(1)
TILE, THREADS, MAXG = 64, 128, 8

def cdiv(a, b): return -(-a // b)

def decode_block(q, kc, vc, H, HKV, D, scale, window, seq, split, ns, kvh, table, bs):
    ctx, qrow = seq
    G = H // HKV
    first = max(0, ctx - window) if window > 0 else 0
    per = cdiv(cdiv(ctx - first, ns), TILE) * TILE
    begin = first + split * per; end = min(ctx, begin + per)
    sq = np.zeros((MAXG, D))
    for i in range(G * D):
        sq[i // D, i % D] = q[qrow, kvh*G*D + i] * scale * 1.4426950408889634
    m = [-math.inf]*MAXG; l = [0.0]*MAXG
    kpairs = D // 2; hsd = THREADS // kpairs; slots = MAXG // hsd
    acc = np.zeros((THREADS, slots, 2))
    ntiles = cdiv(end - begin, TILE) if begin < end else 0
    for tile in range(ntiles):
        t0 = begin + tile * TILE
        K = np.zeros((TILE, D)); V = np.zeros((TILE, D))
        for row in range(TILE):
            tok = t0 + row
            if tok < end:
                slot = table[tok // bs]*bs + tok % bs
                K[row] = kc[slot, kvh]; V[row] = vc[slot, kvh]
        valid = min(TILE, end - t0)
        p = np.zeros((MAXG, TILE)); alpha = [0]*MAXG
        for pair in range(G * TILE):   # all threads together
            g, t = pair // TILE, pair % TILE
            p[g, t] = sq[g] @ K[t] if t < valid else -math.inf
        for warp in range(4):
            for g in range(warp, G, 4):
                s = p[g]
                m_new = max(m[g], s.max())
                pe = np.where(s == -math.inf, 0.0, 2.0 ** (s - m_new))
                p[g] = pe
                a = 2.0 ** (m[g] - m_new) if m[g] != -math.inf else 0.0
                alpha[g] = a; m[g] = m_new; l[g] = l[g]*a + pe.sum()
        for tid in range(THREADS):
            dp, hs = tid % kpairs, tid // kpairs
            for j in range(slots):
                g = hs + j*hsd
                if g < G:
                    acc[tid, j] *= alpha[g]
                    acc[tid, j, 0] += p[g] @ V[:, 2*dp]; acc[tid, j, 1] += p[g] @ V[:, 2*dp+1]
    res = {}
    for tid in range(THREADS):
        dp, hs = tid % kpairs, tid // kpairs
        for j in range(slots):
            g = hs + j*hsd
            if g >= G: continue
            head = kvh*G + g
            res[(head, 2*dp)] = (acc[tid, j, 0], m[g], l[g]); res[(head, 2*dp+1)] = (acc[tid, j, 1], m[g], l[g])
    return res

def run(H, HKV, D, ctx, ns, window=0, bs=16):
    G = H // HKV
    nb = cdiv(ctx, bs) + 2
    table = list(rng.permutation(nb))[:cdiv(ctx, bs)]
    kc = rng.standard_normal((nb*bs, HKV, D)); vc = rng.standard_normal((nb*bs, HKV, D))
    q = rng.standard_normal((5, H*D)); qrow = 4; scale = 1/math.sqrt(D)
    parts = [{} for _ in range(ns)]
    for split in range(ns):
        for kvh in range(HKV):
            parts[split].update(decode_block(q, kc, vc, H, HKV, D, scale, window, (ctx, qrow), split, ns, kvh, table, bs))
    maxerr = 0
    for h in range(H):
        kvh = h // G
        first = max(0, ctx - window) if window > 0 else 0
        keys = [table[k // bs]*bs + k % bs for k in range(first, ctx)]
        s = np.array([q[qrow, h*D:(h+1)*D] @ kc[sl, kvh] for sl in keys]) * scale
        w = np.exp(s - s.max()); w /= w.sum()
        ref = sum(w[j]*vc[keys[j], kvh] for j in range(len(keys)))
        for d in range(D):
            ms = [parts[sp][(h, d)][1] for sp in range(ns)]
            M = max(ms)
            num = sum((2.0 ** (parts[sp][(h, d)][1] - M) if parts[sp][(h, d)][1] != -math.inf else 0) * parts[sp][(h, d)][0] for sp in range(ns))
            den = sum((2.0 ** (parts[sp][(h, d)][1] - M) if parts[sp][(h, d)][1] != -math.inf else 0) * parts[sp][(h, d)][2] for sp in range(ns))
            maxerr = max(maxerr, abs(num/den - ref[d]))
    print(f"H={H} HKV={HKV} D={D} ctx={ctx} splits={ns} window={window}: {maxerr:.2e}")
    assert maxerr < 1e-9

run(8, 2, 128, 300, 1)
run(8, 2, 128, 300, 4)
run(16, 2, 64, 1000, 8, window=200)
run(2, 2, 64, 70, 16)   # many empty splits
run(3, 1, 64, 129, 2)
