#!/usr/bin/env python3
# Fragment-level model of PagedPrefillKernel (kernels/attention_prefill.cuh), one block at a
# time, checked against dense attention in float64. It mirrors the kernel's index math line
# by line (swizzled shared memory, ldmatrix with and without .trans, mma.m16n8k16 fragment
# layouts as the PTX ISA defines them, quad shuffles, online softmax, causal and window
# masks, GQA row packing), so a change to that math can be checked without a GPU:
#   python3 kernels/sim/prefill_fragments.py   (numpy; about 10 s)
# Keep it in step with the kernel.
import numpy as np, math, sys
rng = np.random.default_rng(0)
ROWS, KEYS = 64, 64

def swz(row, chunk, D):
    return row * D + ((chunk ^ (row & 7)) << 3)

def ldmatrix_x4(smem, addrs, trans=False):
    # addrs[lane] = element offset of row (lane%8) of matrix lane//8
    regs = [[None]*4 for _ in range(32)]
    for i in range(4):
        M = np.array([smem[addrs[i*8 + r]: addrs[i*8 + r] + 8] for r in range(8)])  # 8x8
        for lane in range(32):
            if not trans:
                regs[lane][i] = (M[lane//4, 2*(lane%4)], M[lane//4, 2*(lane%4)+1])
            else:
                regs[lane][i] = (M[2*(lane%4), lane//4], M[2*(lane%4)+1, lane//4])
    return regs

def mma(c, a, b0, b1):
    # c[lane] = 4 floats, a[lane] = 4 pairs, b0/b1[lane] = pairs. Build full matrices.
    A = np.zeros((16,16)); B = np.zeros((16,8)); C = np.zeros((16,8))
    for lane in range(32):
        g, t = lane//4, lane%4
        for j in range(2):
            A[g, 2*t+j] = a[lane][0][j]; A[g+8, 2*t+j] = a[lane][1][j]
            A[g, 2*t+8+j] = a[lane][2][j]; A[g+8, 2*t+8+j] = a[lane][3][j]
            B[2*t+j, g] = b0[lane][j]; B[2*t+8+j, g] = b1[lane][j]
            C[g, 2*t+j] = c[lane][j]; C[g+8, 2*t+j] = c[lane][2+j]
    D = A @ B + C
    out = []
    for lane in range(32):
        g, t = lane//4, lane%4
        out.append([D[g, 2*t], D[g, 2*t+1], D[g+8, 2*t], D[g+8, 2*t+1]])
    return out

def cta(q, kc, vc, H, HKV, D, scale, window, seq, tile, kvh, table, bs):
    # q: [rows, H*D]; kc/vc: [slots, HKV, D]
    G = H // HKV; tpt = ROWS // G
    q_len, ctx, q_start = seq
    tok0 = tile * tpt; pos0 = ctx - q_len
    last_tok = min(tok0 + tpt, q_len) - 1
    num_keys = pos0 + last_tok + 1
    n_tiles = -(-num_keys // KEYS)
    first_tile = max(0, pos0 + tok0 - window + 1) // KEYS if window > 0 else 0
    sq = np.zeros(ROWS * D)
    for r in range(ROWS):
        tok = tok0 + r // G
        if r < (ROWS // G) * G and tok < q_len:
            for ch in range(D // 8):
                src = q[q_start + tok, (kvh*G + r % G)*D + ch*8: (kvh*G + r % G)*D + ch*8 + 8]
                o = swz(r, ch, D); sq[o:o+8] = src
    out = {}
    for warp in range(4):
        lanes = range(32)
        qa = []
        for ks in range(D // 16):
            addrs = [swz(warp*16 + (l & 7) + ((l >> 3) & 1)*8, ks*2 + (l >> 4), D) for l in lanes]
            qa.append(ldmatrix_x4(sq, addrs))
        qpos = [[0,0] for _ in lanes]; live = [[False,False] for _ in lanes]
        for l in lanes:
            for h in range(2):
                r = warp*16 + (l >> 2) + h*8; tok = tok0 + r // G
                live[l][h] = r < tpt*G and tok < q_len
                qpos[l][h] = pos0 + tok if live[l][h] else num_keys - 1
        m_run = [[-math.inf]*2 for _ in lanes]; l_run = [[0.0]*2 for _ in lanes]
        o = [[[0.0]*4 for _ in range(D//8)] for _ in lanes]
        for j in range(first_tile, n_tiles):
            sk = np.zeros(KEYS*D); sv = np.zeros(KEYS*D)
            for row in range(KEYS):
                key = j*KEYS + row
                for ch in range(D//8):
                    d = swz(row, ch, D)
                    if key < num_keys:
                        slot = table[key // bs] * bs + key % bs
                        sk[d:d+8] = kc[slot, kvh, ch*8:ch*8+8]; sv[d:d+8] = vc[slot, kvh, ch*8:ch*8+8]
            s = [[[0.0]*4 for _ in range(8)] for _ in lanes]
            for ks in range(D//16):
                for np_ in range(4):
                    addrs = [swz(np_*16 + (l & 7) + ((l >> 4) << 3), ks*2 + ((l >> 3) & 1), D) for l in lanes]
                    b = ldmatrix_x4(sk, addrs)
                    a = [qa[ks][l] for l in lanes]
                    r0 = mma([s[l][2*np_] for l in lanes], a, [b[l][0] for l in lanes], [b[l][1] for l in lanes])
                    r1 = mma([s[l][2*np_+1] for l in lanes], a, [b[l][2] for l in lanes], [b[l][3] for l in lanes])
                    for l in lanes: s[l][2*np_] = r0[l]; s[l][2*np_+1] = r1[l]
            key0 = j*KEYS
            row_max = [[-math.inf]*2 for _ in lanes]
            for l in lanes:
                for nt in range(8):
                    for i in range(4):
                        key = key0 + nt*8 + (l & 3)*2 + (i & 1)
                        v = s[l][nt][i] * scale * 1.4426950408889634
                        qp = qpos[l][i >> 1]
                        if key > qp or (window > 0 and key <= qp - window): v = -math.inf
                        s[l][nt][i] = v; row_max[l][i >> 1] = max(row_max[l][i >> 1], v)
            # quad shuffles xor 1, 2
            for h in range(2):
                rm = [row_max[l][h] for l in lanes]
                rm = [max(rm[l], rm[l ^ 1]) for l in lanes]
                rm = [max(rm[l], rm[l ^ 2]) for l in lanes]
                for l in lanes: row_max[l][h] = rm[l]
            alpha = [[0,0] for _ in lanes]; mexp = [[0,0] for _ in lanes]
            for l in lanes:
                for h in range(2):
                    m_new = max(m_run[l][h], row_max[l][h])
                    m_safe = 0.0 if m_new == -math.inf else m_new
                    alpha[l][h] = 2.0 ** (m_run[l][h] - m_safe) if m_run[l][h] != -math.inf else 0.0
                    m_run[l][h] = m_new; mexp[l][h] = m_safe; l_run[l][h] *= alpha[l][h]
                for nt in range(8):
                    for i in range(4):
                        v = s[l][nt][i]
                        p = 2.0 ** (v - mexp[l][i >> 1]) if v != -math.inf else 0.0
                        s[l][nt][i] = p; l_run[l][i >> 1] += p
                for dt in range(D//8):
                    o[l][dt][0] *= alpha[l][0]; o[l][dt][1] *= alpha[l][0]
                    o[l][dt][2] *= alpha[l][1]; o[l][dt][3] *= alpha[l][1]
            for kk in range(4):
                pa = [[(s[l][2*kk][0], s[l][2*kk][1]), (s[l][2*kk][2], s[l][2*kk][3]),
                       (s[l][2*kk+1][0], s[l][2*kk+1][1]), (s[l][2*kk+1][2], s[l][2*kk+1][3])] for l in lanes]
                for dp in range(D//16):
                    addrs = [swz(kk*16 + (l & 7) + (((l >> 3) & 1) << 3), dp*2 + (l >> 4), D) for l in lanes]
                    b = ldmatrix_x4(sv, addrs, trans=True)
                    r0 = mma([o[l][2*dp] for l in lanes], pa, [b[l][0] for l in lanes], [b[l][1] for l in lanes])
                    r1 = mma([o[l][2*dp+1] for l in lanes], pa, [b[l][2] for l in lanes], [b[l][3] for l in lanes])
                    for l in lanes: o[l][2*dp] = r0[l]; o[l][2*dp+1] = r1[l]
        for h in range(2):
            lr = [l_run[l][h] for l in lanes]
            lr = [lr[l] + lr[l ^ 1] for l in lanes]
            lr = [lr[l] + lr[l ^ 2] for l in lanes]
            for l in lanes:
                if not live[l][h]: continue
                r = warp*16 + (l >> 2) + h*8
                tok = tok0 + r // G; head = kvh*G + r % G
                for dt in range(D//8):
                    d = dt*8 + (l & 3)*2
                    for e in range(2):
                        out[(q_start + tok, head, d + e)] = o[l][dt][2*h + e] / lr[l]
    return out

def reference(q, kc, vc, H, HKV, D, scale, window, seq, table, bs):
    G = H // HKV; q_len, ctx, q_start = seq
    res = {}
    for i in range(q_len):
        p = ctx - q_len + i
        first = max(0, p - window + 1) if window > 0 else 0
        for h in range(H):
            kvh = h // G
            keys = [table[k // bs]*bs + k % bs for k in range(first, p+1)]
            s = np.array([q[q_start+i, h*D:(h+1)*D] @ kc[sl, kvh] for sl in keys]) * scale
            w = np.exp(s - s.max()); w /= w.sum()
            ov = sum(w[j]*vc[keys[j], kvh] for j in range(len(keys)))
            for d in range(D): res[(q_start+i, h, d)] = ov[d]
    return res

def run(H, HKV, D, q_len, ctx, window, bs=16):
    G = H // HKV; tpt = ROWS // G
    nblocks = -(-ctx // bs) + 3
    table = list(rng.permutation(nblocks))[: -(-ctx // bs)]
    kc = rng.standard_normal((nblocks*bs, HKV, D)); vc = rng.standard_normal((nblocks*bs, HKV, D))
    q_start = 3
    q = rng.standard_normal((q_start + q_len, H*D))
    scale = 1/math.sqrt(D)
    got = {}
    for kvh in range(HKV):
        for tile in range(-(-q_len // tpt)):
            got.update(cta(q, kc, vc, H, HKV, D, scale, window, (q_len, ctx, q_start), tile, kvh, table, bs))
    want = reference(q, kc, vc, H, HKV, D, scale, window, (q_len, ctx, q_start), table, bs)
    assert set(got) == set(want), (len(got), len(want))
    err = max(abs(got[k]-want[k]) for k in want)
    print(f"H={H} HKV={HKV} D={D} q_len={q_len} ctx={ctx} window={window}: max abs err {err:.2e}")
    assert err < 1e-9

run(4, 2, 64, 20, 20, 0)
run(6, 2, 64, 30, 100, 0)      # G=3: dead rows
run(2, 2, 64, 70, 75, 0)       # G=1, 2 q tiles, 2 kv tiles
run(8, 1, 64, 9, 140, 40)      # G=8, window
run(4, 1, 128, 17, 130, 0)     # D=128
