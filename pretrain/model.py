"""CroCo: self-supervised pre-training by cross-view completion.

Weinzaepfel et al., "CroCo: Self-Supervised Pre-training for 3D Vision Tasks by
Cross-View Completion" (NeurIPS 2022; cosine position embedding) and CroCo v2
(ICCV 2023; 2D rotary position embedding, ``pos_embed="RoPE100"``).

View 1 is masked (a fixed count of random patches per image), view 2 is whole.
One shared ViT encoder sees view 1's visible tokens and all of view 2; the
decoder puts a learned mask token at view 1's masked positions, then each block
self-attends, cross-attends to view 2 and applies an MLP; a linear head predicts
every patch of view 1; the loss counts the masked patches only.

Names, initialisation and numerics follow naver/croco (models/croco.py, blocks.py,
pos_embed.py, masking.py, criterion.py), so its released checkpoints load with
``load_state_dict(ckpt["model"], strict=True)``. Dropout and drop-path (0 there) are left out.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NormLayer = Callable[[int], nn.Module]  # dim -> module
ActLayer = Callable[[], nn.Module]


def sincos_pos_embed_2d(embed_dim: int, grid_size: int) -> Tensor:
    """Fixed 2D sine-cosine embedding of a square patch grid, as MAE and CroCo.

    Returns (grid_size**2, embed_dim) float32, patches in row-major order, channels
    ``[sin(x w), cos(x w), sin(y w), cos(y w)]`` (each embed_dim/4 wide; x = column,
    y = row, w_i = 10000 ** (-i / (embed_dim/4))), computed in float64 like the reference.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be a multiple of 4, got {embed_dim}")
    r = torch.arange(grid_size, dtype=torch.float64)
    y, x = torch.meshgrid(r, r, indexing="ij")  # (g, g) each
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim / 4))  # (D/4,)

    def embed_1d(pos: Tensor) -> Tensor:
        angles = pos.reshape(-1, 1) * omega  # (N, D/4)
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # (N, D/2)

    return torch.cat([embed_1d(x), embed_1d(y)], dim=1).float()  # (N, D)


def patch_positions(grid_size: int, device: torch.device | str | None = None) -> Tensor:
    """(grid_size**2, 2) int64: (row y, column x) of each patch, row-major."""
    r = torch.arange(grid_size, device=device)
    return torch.cartesian_prod(r, r)  # (N, 2)


class RoPE2D(nn.Module):
    """2D rotary position embedding of CroCo v2 (no parameters, no buffers).

    The first half of each head's channels is rotated by the patch row y, the
    second half by the column x. Within a half of width h, channel i pairs with
    channel i + h/2 ("rotate_half" layout) and turns by pos * freq ** (-i / (h/2)).
    """

    def __init__(self, freq: float = 100.0):
        super().__init__()
        self.base = freq

    def forward(self, tokens: Tensor, pos: Tensor) -> Tensor:
        """tokens (B, heads, N, hd), pos (B, N, 2) int (y, x) -> (B, heads, N, hd)."""
        hd = tokens.shape[-1]
        if hd % 4:
            raise ValueError(f"RoPE2D needs a head dim divisible by 4, got {hd}")
        q = hd // 4
        inv_freq = 1.0 / self.base ** (torch.arange(q, device=tokens.device, dtype=torch.float32) / q)  # (hd/4,)
        angles = pos.float()[..., None] * inv_freq  # (B, N, 2, hd/4)
        angles = torch.cat([angles, angles], dim=-1)[:, None]  # (B, 1, N, 2, hd/2)
        cos, sin = angles.cos().to(tokens.dtype), angles.sin().to(tokens.dtype)
        t = tokens.unflatten(-1, (2, hd // 2))  # (B, heads, N, 2, hd/2): y half, x half
        t1, t2 = t.chunk(2, dim=-1)  # (B, heads, N, 2, hd/4) each
        rotated = torch.cat([-t2, t1], dim=-1)  # (B, heads, N, 2, hd/2)
        return (t * cos + rotated * sin).flatten(-2)  # (B, heads, N, hd)


def math_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The reference formulation, softmax(q k^T * hd**-0.5) v: q (B, h, Nq, hd), k, v (B, h, Nk, hd)."""
    attn = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, h, Nq, Nk)
    return attn.softmax(dim=-1) @ v  # (B, h, Nq, hd)


# Interchangeable: same inputs, same outputs (up to float rounding), same weights.
ATTENTION_IMPLS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "sdpa": F.scaled_dot_product_attention,
    "math": math_attention,
}


class Attention(nn.Module):
    """Multi-head self-attention; ``qkv`` output rows are laid out (3, heads, head_dim) as in timm."""

    def __init__(self, dim: int, num_heads: int, rope: RoPE2D | None = None, attn_impl: str = "sdpa"):
        super().__init__()
        self.num_heads, self.rope, self.attn_impl = num_heads, rope, attn_impl
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """x (B, N, C), pos (B, N, 2) -> (B, N, C)."""
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)  # (B, N, 3, h, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (B, h, N, hd) each
        if self.rope is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        x = ATTENTION_IMPLS[self.attn_impl](q, k, v)  # (B, h, N, hd)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))  # (B, N, C)


class CrossAttention(nn.Module):
    """Multi-head attention of queries from one sequence to keys/values from another."""

    def __init__(self, dim: int, num_heads: int, rope: RoPE2D | None = None, attn_impl: str = "sdpa"):
        super().__init__()
        self.num_heads, self.rope, self.attn_impl = num_heads, rope, attn_impl
        self.projq = nn.Linear(dim, dim, bias=True)
        self.projk = nn.Linear(dim, dim, bias=True)
        self.projv = nn.Linear(dim, dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, qpos: Tensor, kpos: Tensor) -> Tensor:
        """query (B, Nq, C), key/value (B, Nk, C), qpos (B, Nq, 2), kpos (B, Nk, 2) -> (B, Nq, C)."""
        B, Nq, C = query.shape
        heads = lambda t: t.unflatten(-1, (self.num_heads, C // self.num_heads)).transpose(1, 2)
        q, k, v = heads(self.projq(query)), heads(self.projk(key)), heads(self.projv(value))  # (B, h, N*, hd)
        if self.rope is not None:
            q, k = self.rope(q, qpos), self.rope(k, kpos)
        x = ATTENTION_IMPLS[self.attn_impl](q, k, v)  # (B, h, Nq, hd)
        return self.proj(x.transpose(1, 2).reshape(B, Nq, C))  # (B, Nq, C)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act_layer: ActLayer = nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (B, N, C)


class Block(nn.Module):
    """Pre-norm ViT encoder block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, norm_layer: NormLayer = nn.LayerNorm,
                 act_layer: ActLayer = nn.GELU, rope: RoPE2D | None = None, attn_impl: str = "sdpa"):  # fmt: skip
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, rope, attn_impl)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), pos)  # (B, N, C)
        return x + self.mlp(self.norm2(x))  # (B, N, C)


class DecoderBlock(nn.Module):
    """Self-attention on x, cross-attention from x to y (y normalised by ``norm_y``), MLP; y passes through."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, norm_layer: NormLayer = nn.LayerNorm,
                 act_layer: ActLayer = nn.GELU, norm_mem: bool = True, rope: RoPE2D | None = None,
                 attn_impl: str = "sdpa"):  # fmt: skip
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, rope, attn_impl)
        self.cross_attn = CrossAttention(dim, num_heads, rope, attn_impl)
        self.norm2 = norm_layer(dim)
        self.norm3 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer)
        self.norm_y = norm_layer(dim) if norm_mem else nn.Identity()

    def forward(self, x: Tensor, y: Tensor, xpos: Tensor, ypos: Tensor) -> Tensor:
        """x (B, N, C) view-1 tokens, y (B, M, C) view-2 tokens -> (B, N, C)."""
        x = x + self.attn(self.norm1(x), xpos)  # (B, N, C)
        y_ = self.norm_y(y)  # (B, M, C)
        x = x + self.cross_attn(self.norm2(x), y_, y_, xpos, ypos)  # (B, N, C)
        return x + self.mlp(self.norm3(x))  # (B, N, C)


class PatchEmbed(nn.Module):
    """(B, 3, H, W) -> (B, N, C): one token per non-overlapping patch, row-major."""

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, in_chans: int = 3):
        super().__init__()
        self.img_size, self.patch_size = img_size, patch_size
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"expected {self.img_size}x{self.img_size} images, got {tuple(x.shape[-2:])}")
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, C)


def gather_tokens(x: Tensor, ids: Tensor) -> Tensor:
    """x (B, N, C), ids (B, n) -> (B, n, C): x[b, ids[b]]."""
    return x.gather(1, ids[..., None].expand(-1, -1, x.shape[-1]))


class CroCoNet(nn.Module):
    """CroCo pre-training network; the defaults are the paper's (ViT-B/16 encoder, 8-block 512-d decoder)."""

    def __init__(
        self,
        img_size: int = 224,  # square input side, pixels
        patch_size: int = 16,  # square patch side, pixels
        mask_ratio: float = 0.9,  # int(mask_ratio * N) patches of view 1 are masked
        enc_embed_dim: int = 768, enc_depth: int = 12, enc_num_heads: int = 12,  # ViT encoder
        dec_embed_dim: int = 512, dec_depth: int = 8, dec_num_heads: int = 16,  # decoder
        mlp_ratio: float = 4,  # MLP hidden width / embedding width, encoder and decoder
        norm_layer: NormLayer = partial(nn.LayerNorm, eps=1e-6),
        norm_im2_in_dec: bool = True,  # LayerNorm (norm_y) on view-2 tokens before each cross-attention
        pos_embed: str = "cosine",  # "cosine" (added fixed sin-cos) or "RoPE<freq>" (2D rotary, e.g. "RoPE100")
        act_layer: ActLayer = nn.GELU,
        attn_impl: str = "sdpa",  # "sdpa" (fused kernel) or "math" (explicit softmax, the reference formulation)
    ):  # fmt: skip
        super().__init__()
        if attn_impl not in ATTENTION_IMPLS:
            raise ValueError(f"unknown attn_impl {attn_impl!r}; known: {sorted(ATTENTION_IMPLS)}")
        self.img_size, self.patch_size, self.mask_ratio = img_size, patch_size, mask_ratio
        self.enc_embed_dim, self.dec_embed_dim, self.pos_embed = enc_embed_dim, dec_embed_dim, pos_embed
        self.patch_embed = PatchEmbed(img_size, patch_size, enc_embed_dim)
        self.grid_size, self.num_patches = self.patch_embed.grid_size, self.patch_embed.num_patches
        self.num_mask = int(mask_ratio * self.num_patches)

        self.rope: RoPE2D | None = None
        if pos_embed == "cosine":  # persistent buffers: they are in the reference's state_dict
            self.register_buffer("enc_pos_embed", sincos_pos_embed_2d(enc_embed_dim, self.grid_size))  # (N, E)
            self.register_buffer("dec_pos_embed", sincos_pos_embed_2d(dec_embed_dim, self.grid_size))  # (N, D)
        elif pos_embed.startswith("RoPE"):
            self.enc_pos_embed = self.dec_pos_embed = None
            self.rope = RoPE2D(freq=float(pos_embed[len("RoPE") :]))
        else:
            raise ValueError(f"unknown pos_embed {pos_embed!r}: 'cosine' or 'RoPE<freq>', e.g. 'RoPE100'")

        block = partial(Block, mlp_ratio=mlp_ratio, norm_layer=norm_layer, act_layer=act_layer, rope=self.rope,
                        attn_impl=attn_impl)  # fmt: skip
        self.enc_blocks = nn.ModuleList([block(enc_embed_dim, enc_num_heads) for _ in range(enc_depth)])
        self.enc_norm = norm_layer(enc_embed_dim)

        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_embed_dim))
        self.decoder_embed = nn.Linear(enc_embed_dim, dec_embed_dim, bias=True)
        dec_block = partial(DecoderBlock, mlp_ratio=mlp_ratio, norm_layer=norm_layer, act_layer=act_layer,
                            norm_mem=norm_im2_in_dec, rope=self.rope, attn_impl=attn_impl)  # fmt: skip
        self.dec_blocks = nn.ModuleList([dec_block(dec_embed_dim, dec_num_heads) for _ in range(dec_depth)])
        self.dec_norm = norm_layer(dec_embed_dim)
        self.prediction_head = nn.Linear(dec_embed_dim, patch_size**2 * 3, bias=True)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """As the reference: patch projection xavier-uniform as a (C, 3*p*p) Linear (its bias keeps
        PyTorch's Conv2d default), mask token N(0, 0.02), Linear xavier-uniform / bias 0, LayerNorm 1 / 0."""
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def random_mask(self, batch_size: int, device: torch.device | str | None = None) -> Tensor:
        """(B, N) bool, True = masked: ``num_mask`` patches per image, uniform, independent per image."""
        noise = torch.rand(batch_size, self.num_patches, device=device)  # (B, N)
        return noise.argsort(dim=1) < self.num_mask  # a random permutation per row, thresholded

    def patchify(self, imgs: Tensor) -> Tensor:
        """imgs (B, 3, H, W) -> (B, N, p*p*3): patches row-major, pixels row, column, then channel."""
        p, g = self.patch_size, imgs.shape[-1] // self.patch_size
        x = imgs.reshape(imgs.shape[0], 3, g, p, g, p)  # (B, 3, gh, p, gw, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(imgs.shape[0], g * g, p * p * 3)  # (B, N, p*p*3)

    def unpatchify(self, x: Tensor, channels: int = 3) -> Tensor:
        """x (B, N, p*p*channels) -> (B, channels, H, W); the inverse of ``patchify``."""
        p, g = self.patch_size, int(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], g, g, p, p, channels)  # (B, gh, gw, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], channels, g * p, g * p)  # (B, c, H, W)

    def forward_encoder(self, imgs: Tensor, keep: Tensor | None = None) -> Tensor:
        """imgs (B, 3, H, W); keep (B, n) ascending indices of the patches to encode (None: all)
        -> (B, n, enc_embed_dim) normalised features."""
        x = self.patch_embed(imgs)  # (B, N, E)
        pos = patch_positions(self.grid_size, imgs.device).expand(x.shape[0], -1, -1)  # (B, N, 2)
        if self.enc_pos_embed is not None:
            x = x + self.enc_pos_embed  # (B, N, E)
        if keep is not None:
            x, pos = gather_tokens(x, keep), gather_tokens(pos, keep)  # (B, n, E), (B, n, 2)
        for blk in self.enc_blocks:
            x = blk(x, pos)  # (B, n, E)
        return self.enc_norm(x)  # (B, n, E)

    def forward_decoder(self, feat1: Tensor, keep1: Tensor, feat2: Tensor) -> Tensor:
        """feat1 (B, n, E) view-1 features at patch indices keep1 (B, n), feat2 (B, N, E) -> (B, N, D)."""
        x1 = self.decoder_embed(feat1)  # (B, n, D)
        x2 = self.decoder_embed(feat2)  # (B, N, D)
        B, _, D = x1.shape
        tokens = self.mask_token.to(x1.dtype).expand(B, self.num_patches, D)  # (B, N, D)
        x1 = tokens.scatter(1, keep1[..., None].expand(-1, -1, D), x1)  # (B, N, D) visible tokens in place
        if self.dec_pos_embed is not None:
            x1, x2 = x1 + self.dec_pos_embed, x2 + self.dec_pos_embed  # (B, N, D)
        pos = patch_positions(self.grid_size, x1.device).expand(B, -1, -1)  # (B, N, 2)
        for blk in self.dec_blocks:
            x1 = blk(x1, x2, pos, pos)  # (B, N, D)
        return self.dec_norm(x1)  # (B, N, D)

    def forward(self, img1: Tensor, img2: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """img1, img2 (B, 3, H, W); mask (B, N) bool, True = masked, the same count per row (None: random).

        Returns ``(out, mask, target)``: out (B, N, p*p*3) predicted patches of img1, the mask
        used, target = ``patchify(img1)`` (B, N, p*p*3).
        """
        B = img1.shape[0]
        if mask is None:
            mask, n_visible = self.random_mask(B, img1.device), self.num_patches - self.num_mask
        else:
            if mask.shape != (B, self.num_patches) or mask.dtype != torch.bool:
                raise ValueError(f"mask must be bool ({B}, {self.num_patches}), got {mask.dtype} {tuple(mask.shape)}")
            counts = mask.sum(dim=1).tolist()  # one host sync
            if len(set(counts)) > 1:
                raise ValueError(f"every row of mask must hold the same count of masked patches, got {counts}")
            n_visible = self.num_patches - counts[0]
        keep = mask.to(torch.uint8).argsort(dim=1, stable=True)[:, :n_visible]  # (B, n) visible, ascending
        feat1 = self.forward_encoder(img1, keep)  # (B, n, E)
        feat2 = self.forward_encoder(img2)  # (B, N, E)
        out = self.prediction_head(self.forward_decoder(feat1, keep, feat2))  # (B, N, p*p*3)
        return out, mask, self.patchify(img1)


def masked_patch_loss(out: Tensor, target: Tensor, mask: Tensor, norm_pix: bool = True, eps: float = 1e-6) -> Tensor:
    """Mean squared error over the masked patches only (CroCo's ``MaskedMSE``).

    out, target (B, N, P); mask (B, N) bool, True = masked. With ``norm_pix`` the target is
    normalised per patch, (t - mean) / sqrt(var + eps), with the *unbiased* variance as the
    reference (torch's default ``var``). The error is averaged over a patch's P values,
    then over the masked patches.
    """
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)  # (B, N, 1)
        var = target.var(dim=-1, keepdim=True)  # (B, N, 1), unbiased
        target = (target - mean) / (var + eps) ** 0.5  # (B, N, P)
    loss = ((out - target) ** 2).mean(dim=-1)  # (B, N)
    m = mask.to(loss.dtype)
    return (loss * m).sum() / m.sum()


# Only constructor arguments of the reference CroCoNet, so a preset is also a valid "croco_kwargs".
MODEL_PRESETS: dict[str, dict] = {
    # CroCo (NeurIPS 2022), released as CroCo.pth: ViT-B/16 encoder, 512-d 8-block decoder, cosine.
    "croco-base": {},
    # CroCo v2's largest, released as CroCo_V2_ViTLarge_BaseDecoder.pth (the encoder CroCo-Stereo/Flow
    # fine-tune): ViT-L/16 encoder, ViT-B-sized decoder with 12 heads (not 16), 2D RoPE at base 100.
    "croco-large": dict(enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12,
                        dec_num_heads=12, pos_embed="RoPE100"),
    # For smoke tests and CPU runs: trains in seconds at 64 px (pass img_size=64).
    "tiny": dict(enc_embed_dim=192, enc_depth=4, enc_num_heads=3, dec_embed_dim=128, dec_depth=2, dec_num_heads=4),
}  # fmt: skip


def preset(name: str) -> dict:
    """The constructor arguments of preset ``name`` (a copy); :class:`ValueError` names the known ones."""
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODEL_PRESETS))}")
    return dict(MODEL_PRESETS[name])


def build_model(name: str, **overrides) -> CroCoNet:
    """The preset ``name`` with constructor arguments ``overrides`` on top."""
    return CroCoNet(**{**preset(name), **overrides})


def flops_per_pair(model: CroCoNet, img_size: int | None = None) -> int:
    """Forward + backward FLOPs of one image pair: 2*m*n*k per matmul (the patch projection,
    every Linear, attention's q k^T and attn v), backward counted as twice the forward.
    Norms, softmax, GELU, RoPE and additions are left out. img_size defaults to the model's."""
    N = ((img_size or model.img_size) // model.patch_size) ** 2
    n1 = N - int(model.mask_ratio * N)  # visible tokens of view 1
    E, D, P = model.enc_embed_dim, model.dec_embed_dim, model.patch_size**2 * 3
    He, Hd = model.enc_blocks[0].mlp.fc1.out_features, model.dec_blocks[0].mlp.fc1.out_features

    linear = lambda n, d_in, d_out: 2 * n * d_in * d_out  # (n, d_in) @ (d_in, d_out)
    attention = lambda nq, nk, d: 2 * (2 * nq * nk * d)  # q k^T and attn v, all heads together
    mlp = lambda n, d, hidden: linear(n, d, hidden) + linear(n, hidden, d)
    enc_block = lambda n: linear(n, E, 3 * E) + attention(n, n, E) + linear(n, E, E) + mlp(n, E, He)
    dec_block = (linear(N, D, 3 * D) + attention(N, N, D) + linear(N, D, D)  # self-attention
                 + 4 * linear(N, D, D) + attention(N, N, D)  # cross-attention: q, k, v, proj
                 + mlp(N, D, Hd))  # fmt: skip
    forward = (2 * linear(N, P, E)  # patch projection, both views
               + len(model.enc_blocks) * (enc_block(n1) + enc_block(N))
               + linear(n1 + N, E, D) + len(model.dec_blocks) * dec_block + linear(N, D, P))  # fmt: skip
    return 3 * forward
