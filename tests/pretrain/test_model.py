"""CroCo model: shapes, masking, gradients, loss, the reference's names, attention and RoPE equivalences."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pretrain.model import (
    MODEL_PRESETS,
    CroCoNet,
    RoPE2D,
    build_model,
    flops_per_pair,
    masked_patch_loss,
    sincos_pos_embed_2d,
)

IMG = 64  # test image side: a 4 x 4 grid of 16-pixel patches
N = (IMG // 16) ** 2
ATOL = 1e-5  # float32 agreement between two formulations of the same computation
POS_EMBEDS = ["cosine", "RoPE100"]


def tiny(seed: int = 0, **overrides) -> CroCoNet:
    torch.manual_seed(seed)
    return build_model("tiny", img_size=IMG, **overrides).eval()


def images(batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, IMG, IMG, generator=g), torch.randn(batch, 3, IMG, IMG, generator=g)


def random_mask(batch: int, n_masked: int, seed: int = 2) -> torch.Tensor:
    """(batch, N) bool with n_masked True per row."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, N, generator=g).argsort(dim=1) < n_masked


def reference_keys(enc_depth: int, dec_depth: int, cosine: bool) -> list[str]:
    """naver/croco CroCoNet's state_dict keys, in its order."""
    wb = lambda name: [f"{name}.weight", f"{name}.bias"]
    enc = ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
    dec = ["norm1", "attn.qkv", "attn.proj", "cross_attn.projq", "cross_attn.projk", "cross_attn.projv",
           "cross_attn.proj", "norm2", "norm3", "mlp.fc1", "mlp.fc2", "norm_y"]  # fmt: skip
    keys = ["mask_token"] + (["enc_pos_embed", "dec_pos_embed"] if cosine else []) + wb("patch_embed.proj")
    keys += [k for i in range(enc_depth) for m in enc for k in wb(f"enc_blocks.{i}.{m}")]
    keys += wb("enc_norm") + wb("decoder_embed")
    keys += [k for i in range(dec_depth) for m in dec for k in wb(f"dec_blocks.{i}.{m}")]
    return keys + wb("dec_norm") + wb("prediction_head")


@pytest.mark.parametrize("pos_embed", POS_EMBEDS)
def test_forward_shapes_and_random_masks(pos_embed):
    model = tiny(pos_embed=pos_embed)
    img1, img2 = images(batch=16)
    out, mask, target = model(img1, img2)
    assert out.shape == target.shape == (16, N, 16 * 16 * 3)
    assert torch.isfinite(out).all()
    assert mask.dtype == torch.bool and mask.shape == (16, N)
    assert (mask.sum(dim=1) == int(0.9 * N)).all()
    assert not (mask == mask[0]).all(), "every image drew the same mask"
    assert torch.equal(target, model.patchify(img1))


def test_explicit_mask_is_honoured():
    model = tiny()
    img1, img2 = images()
    mask = random_mask(2, n_masked=12)  # not the model's own count (14)
    out, used, _ = model(img1, img2, mask=mask)
    assert torch.equal(used, mask)
    p, g = 16, IMG // 16
    masked, visible = mask[0].nonzero()[0].item(), (~mask[0]).nonzero()[0].item()
    for idx, changes in ((masked, False), (visible, True)):  # view 1's masked pixels are never seen
        edited = img1.clone()
        r, c = divmod(idx, g)
        edited[0, :, r * p : (r + 1) * p, c * p : (c + 1) * p] += 1.0
        out2, _, _ = model(edited, img2, mask=mask)
        assert torch.allclose(out2, out, atol=0) != changes


def test_explicit_mask_is_checked():
    model = tiny()
    img1, img2 = images()
    uneven = random_mask(2, n_masked=12)
    uneven[1, (~uneven[1]).nonzero()[0]] = True  # 12 and 13 masked
    with pytest.raises(ValueError, match="same count"):
        model(img1, img2, mask=uneven)
    with pytest.raises(ValueError, match="bool"):
        model(img1, img2, mask=random_mask(2, 12).float())


@pytest.mark.parametrize("pos_embed", POS_EMBEDS)
@pytest.mark.parametrize("name", sorted(MODEL_PRESETS))
def test_every_parameter_gets_a_gradient(name, pos_embed):
    torch.manual_seed(0)
    shallow = {} if name == "tiny" else {"enc_depth": 1, "dec_depth": 1}  # preset widths, CPU-sized depth
    model = build_model(name, img_size=IMG, pos_embed=pos_embed, **shallow)
    out, mask, target = model(*images())
    loss = masked_patch_loss(out, target, mask)
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("norm_pix", [True, False])
def test_loss_counts_masked_patches_only(norm_pix):
    g = torch.Generator().manual_seed(3)
    out, target = torch.randn(2, N, 48, generator=g), torch.randn(2, N, 48, generator=g)
    mask = random_mask(2, n_masked=10)
    loss = masked_patch_loss(out, target, mask, norm_pix=norm_pix)
    noise = torch.randn(out.shape, generator=g)
    assert masked_patch_loss(out + noise * (~mask)[..., None], target, mask, norm_pix=norm_pix) == loss
    assert masked_patch_loss(out + noise * mask[..., None], target, mask, norm_pix=norm_pix) != loss


def test_norm_pix_target():
    g = torch.Generator().manual_seed(4)
    P = 48
    target = 3.0 + 2.0 * torch.randn(2, N, P, generator=g, dtype=torch.float64)
    mask = random_mask(2, n_masked=10)
    mean = target.sum(-1, keepdim=True) / P
    var = ((target - mean) ** 2).sum(-1, keepdim=True) / (P - 1)  # unbiased, as the reference's MaskedMSE
    normalised = (target - mean) / torch.sqrt(var + 1e-6)
    assert masked_patch_loss(normalised, target, mask) < 1e-20
    # predicting 0: each masked patch costs mean(normalised**2) = (P - 1) / P (nearly), not 1 (biased var)
    expected = ((P - 1) / P * var / (var + 1e-6))[mask].mean()
    assert torch.isclose(masked_patch_loss(torch.zeros_like(target), target, mask), expected)
    plain = ((target**2).mean(-1))[mask].mean()
    assert torch.isclose(masked_patch_loss(torch.zeros_like(target), target, mask, norm_pix=False), plain)


def test_patchify_layout():
    model = tiny()
    img, _ = images()
    target = model.patchify(img)
    p, g = 16, IMG // 16
    for b, r, c, i, j, ch in [(0, 0, 0, 0, 0, 0), (1, 2, 3, 5, 7, 2), (0, 3, 1, 15, 0, 1)]:
        assert target[b, r * g + c, (i * p + j) * 3 + ch] == img[b, ch, r * p + i, c * p + j]
    assert torch.equal(model.unpatchify(target), img)


@pytest.mark.parametrize("pos_embed", POS_EMBEDS)
def test_reference_names_and_parameter_count(pos_embed):
    with torch.device("meta"):
        model = build_model("croco-base", pos_embed=pos_embed)
    cosine = pos_embed == "cosine"
    assert list(model.state_dict()) == reference_keys(12, 8, cosine)
    assert sum(p.numel() for p in model.parameters()) == 120_076_288
    buffers = dict(model.named_buffers())
    if cosine:  # persistent buffers, as the reference registers them
        assert {k: tuple(v.shape) for k, v in buffers.items()} == {"enc_pos_embed": (196, 768),
                                                                     "dec_pos_embed": (196, 512)}  # fmt: skip
    else:
        assert not buffers


def test_initialisation_as_reference():
    model = tiny()
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            bound = math.sqrt(6 / (m.in_features + m.out_features))  # xavier-uniform
            assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.9 * bound, name
            assert not m.bias.any(), name
        elif isinstance(m, torch.nn.LayerNorm):
            assert (m.weight == 1).all() and not m.bias.any(), name
    w = model.patch_embed.proj.weight  # (E, 3, p, p) as a (E, 3*p*p) Linear
    assert w.abs().max() <= math.sqrt(6 / (w[0].numel() + w.shape[0]))
    assert 0.015 < model.mask_token.std() < 0.025


@pytest.mark.parametrize("pos_embed", POS_EMBEDS)
def test_sdpa_matches_math_attention(pos_embed):
    sdpa, math_ = tiny(pos_embed=pos_embed, attn_impl="sdpa"), tiny(seed=5, pos_embed=pos_embed, attn_impl="math")
    math_.load_state_dict(sdpa.state_dict(), strict=True)
    img1, img2 = images()
    mask = random_mask(2, n_masked=14)
    assert torch.allclose(sdpa(img1, img2, mask)[0], math_(img1, img2, mask)[0], atol=ATOL)


def test_rope_matches_its_definition():
    """Channel i of the y (first) half pairs with i + hd/4 and turns by y * 100 ** (-i / (hd/4)); same for x."""
    hd, q = 16, 4
    g = torch.Generator().manual_seed(6)
    tokens = torch.randn(1, 2, 5, hd, generator=g, dtype=torch.float64)
    pos = torch.randint(0, 14, (1, 5, 2), generator=g)
    expected = tokens.clone()
    for n in range(5):
        for half in (0, 1):  # 0: y, first half; 1: x, second half
            for i in range(q):
                a = pos[0, n, half].item() * 100.0 ** (-i / q)
                u, v = tokens[0, :, n, half * 2 * q + i], tokens[0, :, n, half * 2 * q + i + q]
                expected[0, :, n, half * 2 * q + i] = u * math.cos(a) - v * math.sin(a)
                expected[0, :, n, half * 2 * q + i + q] = v * math.cos(a) + u * math.sin(a)
    assert torch.allclose(RoPE2D(100.0)(tokens, pos), expected, atol=1e-6)


def test_rope_is_relative():
    rope = RoPE2D(100.0)
    g = torch.Generator().manual_seed(7)
    q, k = torch.randn(2, 3, 10, 32, generator=g), torch.randn(2, 3, 10, 32, generator=g)
    qpos, kpos = torch.randint(0, 8, (2, 10, 2), generator=g), torch.randint(0, 8, (2, 10, 2), generator=g)
    scores = lambda dq, dk: rope(q, qpos + dq) @ rope(k, kpos + dk).transpose(-2, -1)
    shift = torch.tensor([3, 5])
    assert torch.allclose(scores(0, 0), scores(shift, shift), atol=1e-4)
    assert not torch.allclose(scores(0, 0), scores(0, shift), atol=1e-2)


def test_sincos_pos_embed_layout():
    dim, grid = 16, 4
    pe = sincos_pos_embed_2d(dim, grid)
    assert pe.shape == (grid * grid, dim) and pe.dtype == torch.float32
    for r in range(grid):
        for c in range(grid):
            for i in range(dim // 4):  # [sin(x w), cos(x w), sin(y w), cos(y w)], x = column
                w = 10000 ** (-i / (dim // 4))
                row = pe[r * grid + c]
                expected = [math.sin(c * w), math.cos(c * w), math.sin(r * w), math.cos(r * w)]
                assert torch.allclose(row[i :: dim // 4], torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize("pos_embed", POS_EMBEDS)
def test_state_dict_round_trip(pos_embed):
    a, b = tiny(pos_embed=pos_embed), tiny(seed=8, pos_embed=pos_embed)
    buffer = io.BytesIO()
    torch.save({"model": a.state_dict()}, buffer)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer)["model"], strict=True)
    img1, img2 = images()
    mask = random_mask(2, n_masked=14)
    assert torch.equal(a(img1, img2, mask)[0], b(img1, img2, mask)[0])


def test_build_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="croco-base, croco-large, tiny"):
        build_model("croco-huge")
    with pytest.raises(ValueError, match="pos_embed"):
        build_model("tiny", pos_embed="learned")
    with pytest.raises(ValueError, match="attn_impl"):
        build_model("tiny", attn_impl="flash")


def test_flops_per_pair_matches_torch_counter():
    """torch's counter sees the same matmuls (with "math" attention; it misses fused SDPA's CPU backward)."""
    model = tiny(attn_impl="math")
    img1, img2 = (x.requires_grad_() for x in images(batch=1))  # so the patch projection's input grad counts
    with FlopCounterMode(display=False) as counter:
        out, mask, target = model(img1, img2)
        masked_patch_loss(out, target, mask).backward()
    assert counter.get_total_flops() == flops_per_pair(model)
    with torch.device("meta"):
        assert 155e9 < flops_per_pair(build_model("croco-base")) < 165e9  # about 160 GFLOPs at 224 px
