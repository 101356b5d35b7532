"""Benign PyTorch generators: transformer LMs, vision models, whole-module and
TorchScript saves, and training checkpoints.

Every model is tiny (the structure is what matters, not the size): hidden
sizes of 16-128, a few layers, small vocabularies.  Parameter names follow
the Hugging Face / torchvision conventions that real hub files use.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import random
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from benign_base import Ctx, fake_modules, legacy_save, legacy_tar_save, place

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# --- building blocks with HF-style names ------------------------------------

class Node(nn.Module):
    """A container whose children are given by name; no forward().  Lets us
    build module trees whose ``state_dict()`` keys (and ``_metadata``) match
    real Hugging Face checkpoints."""

    def __init__(self, /, **children: Any):
        super().__init__()
        for name, child in children.items():
            if isinstance(child, nn.Parameter):
                self.register_parameter(name, child)
            elif isinstance(child, torch.Tensor):
                self.register_buffer(name, child)
            else:
                self.add_module(name, child)


def lin(i: int, o: int, bias: bool = True) -> nn.Linear:
    return nn.Linear(i, o, bias=bias)


def ln(d: int) -> nn.LayerNorm:
    return nn.LayerNorm(d)


def rms(d: int) -> Node:
    return Node(weight=nn.Parameter(torch.ones(d)))


def conv1d(i: int, o: int) -> Node:  # GPT-2's transposed Linear
    return Node(weight=nn.Parameter(torch.randn(i, o) * 0.02),
                bias=nn.Parameter(torch.zeros(o)))


def emb(n: int, d: int) -> nn.Embedding:
    return nn.Embedding(n, d)


def stack(n: int, make) -> nn.ModuleList:
    return nn.ModuleList([make(i) for i in range(n)])


def bert_like(prefix: str, v: int, d: int, n_layers: int, ff: int, head: str,
              max_pos: int = 128) -> nn.Module:
    def layer(_):
        return Node(
            attention=Node(self=Node(query=lin(d, d), key=lin(d, d), value=lin(d, d)),
                           output=Node(dense=lin(d, d), LayerNorm=ln(d))),
            intermediate=Node(dense=lin(d, ff)),
            output=Node(dense=lin(ff, d), LayerNorm=ln(d)))
    body = Node(
        embeddings=Node(word_embeddings=emb(v, d), position_embeddings=emb(max_pos, d),
                        token_type_embeddings=emb(2, d), LayerNorm=ln(d),
                        position_ids=torch.arange(max_pos).unsqueeze(0)),
        encoder=Node(layer=stack(n_layers, layer)))
    if head != "mlm":
        body.add_module("pooler", Node(dense=lin(d, d)))
    root = Node(**{prefix: body})
    word = body.embeddings.word_embeddings
    if head == "mlm" and prefix == "bert":
        dec = lin(d, v)
        dec.weight = word.weight  # tied
        root.add_module("cls", Node(predictions=Node(
            transform=Node(dense=lin(d, d), LayerNorm=ln(d)), decoder=dec,
            bias=dec.bias)))
    elif head == "mlm":  # roberta
        dec = lin(d, v)
        dec.weight = word.weight
        root.add_module("lm_head", Node(dense=lin(d, d), layer_norm=ln(d),
                                        decoder=dec, bias=dec.bias))
    else:
        root.add_module("classifier", lin(d, 3 if head == "cls3" else 2))
    return root


def distilbert(v: int, d: int, n_layers: int, ff: int, head: str) -> nn.Module:
    def layer(_):
        return Node(attention=Node(q_lin=lin(d, d), k_lin=lin(d, d), v_lin=lin(d, d),
                                   out_lin=lin(d, d)),
                    sa_layer_norm=ln(d),
                    ffn=Node(lin1=lin(d, ff), lin2=lin(ff, d)),
                    output_layer_norm=ln(d))
    body = Node(embeddings=Node(word_embeddings=emb(v, d), position_embeddings=emb(128, d),
                                LayerNorm=ln(d)),
                transformer=Node(layer=stack(n_layers, layer)))
    root = Node(distilbert=body)
    if head == "mlm":
        proj = lin(d, v)
        proj.weight = body.embeddings.word_embeddings.weight
        root.add_module("vocab_transform", lin(d, d))
        root.add_module("vocab_layer_norm", ln(d))
        root.add_module("vocab_projector", proj)
    else:
        root.add_module("pre_classifier", lin(d, d))
        root.add_module("classifier", lin(d, 2))
    return root


def gpt2(v: int, d: int, n_layers: int, ff: int, n_pos: int = 64,
         legacy_buffers: bool = True) -> nn.Module:
    def layer(_):
        attn = Node(c_attn=conv1d(d, 3 * d), c_proj=conv1d(d, d))
        if legacy_buffers:  # what transformers < 4.31 saved
            attn.register_buffer("bias", torch.tril(torch.ones(n_pos, n_pos, dtype=torch.bool))
                                 .view(1, 1, n_pos, n_pos))
            attn.register_buffer("masked_bias", torch.tensor(-1e4))
        return Node(ln_1=ln(d), attn=attn, ln_2=ln(d),
                    mlp=Node(c_fc=conv1d(d, ff), c_proj=conv1d(ff, d)))
    tr = Node(wte=emb(v, d), wpe=emb(n_pos, d), h=stack(n_layers, layer), ln_f=ln(d))
    head = lin(d, v, bias=False)
    head.weight = tr.wte.weight
    return Node(transformer=tr, lm_head=head)


def llama(v: int, d: int, n_layers: int, ff: int, kv_heads_div: int = 1,
          qkv_bias: bool = False, tie: bool = False, inv_freq: bool = True) -> nn.Module:
    kv = d // kv_heads_div

    def layer(_):
        attn = Node(q_proj=lin(d, d, qkv_bias), k_proj=lin(d, kv, qkv_bias),
                    v_proj=lin(d, kv, qkv_bias), o_proj=lin(d, d, False))
        if inv_freq:
            head_dim = max(2, d // 4)
            attn.add_module("rotary_emb", Node(inv_freq=1.0 / (10000 ** (
                torch.arange(0, head_dim, 2).float() / head_dim))))
        return Node(self_attn=attn,
                    mlp=Node(gate_proj=lin(d, ff, False), up_proj=lin(d, ff, False),
                             down_proj=lin(ff, d, False)),
                    input_layernorm=rms(d), post_attention_layernorm=rms(d))
    model = Node(embed_tokens=emb(v, d), layers=stack(n_layers, layer), norm=rms(d))
    head = lin(d, v, bias=False)
    if tie:
        head.weight = model.embed_tokens.weight
    return Node(model=model, lm_head=head)


def opt(v: int, d: int, n_layers: int, ff: int) -> nn.Module:
    def layer(_):
        return Node(self_attn=Node(k_proj=lin(d, d), v_proj=lin(d, d), q_proj=lin(d, d),
                                   out_proj=lin(d, d)),
                    self_attn_layer_norm=ln(d), fc1=lin(d, ff), fc2=lin(ff, d),
                    final_layer_norm=ln(d))
    dec = Node(embed_tokens=emb(v, d), embed_positions=emb(130, d),
               final_layer_norm=ln(d), layers=stack(n_layers, layer))
    head = lin(d, v, bias=False)
    head.weight = dec.embed_tokens.weight
    return Node(model=Node(decoder=dec), lm_head=head)


def t5(v: int, d: int, n_layers: int, ff: int, gated: bool = False) -> nn.Module:
    def attn(first: bool):
        a = Node(q=lin(d, d, False), k=lin(d, d, False), v=lin(d, d, False),
                 o=lin(d, d, False))
        if first:
            a.add_module("relative_attention_bias", emb(32, 4))
        return a

    def ffn():
        if gated:
            return Node(wi_0=lin(d, ff, False), wi_1=lin(d, ff, False), wo=lin(ff, d, False))
        return Node(wi=lin(d, ff, False), wo=lin(ff, d, False))

    def enc_block(i):
        return Node(layer=nn.ModuleList([
            Node(SelfAttention=attn(i == 0), layer_norm=rms(d)),
            Node(DenseReluDense=ffn(), layer_norm=rms(d))]))

    def dec_block(i):
        return Node(layer=nn.ModuleList([
            Node(SelfAttention=attn(i == 0), layer_norm=rms(d)),
            Node(EncDecAttention=attn(False), layer_norm=rms(d)),
            Node(DenseReluDense=ffn(), layer_norm=rms(d))]))
    shared = emb(v, d)
    enc = Node(embed_tokens=shared, block=stack(n_layers, enc_block), final_layer_norm=rms(d))
    dec = Node(embed_tokens=shared, block=stack(n_layers, dec_block), final_layer_norm=rms(d))
    return Node(shared=shared, encoder=enc, decoder=dec, lm_head=lin(d, v, False))


def bart(v: int, d: int, n_layers: int, ff: int) -> nn.Module:
    def attn():
        return Node(k_proj=lin(d, d), v_proj=lin(d, d), q_proj=lin(d, d), out_proj=lin(d, d))

    def enc_layer(_):
        return Node(self_attn=attn(), self_attn_layer_norm=ln(d), fc1=lin(d, ff),
                    fc2=lin(ff, d), final_layer_norm=ln(d))

    def dec_layer(_):
        return Node(self_attn=attn(), self_attn_layer_norm=ln(d), encoder_attn=attn(),
                    encoder_attn_layer_norm=ln(d), fc1=lin(d, ff), fc2=lin(ff, d),
                    final_layer_norm=ln(d))
    shared = emb(v, d)
    enc = Node(embed_tokens=shared, embed_positions=emb(130, d),
               layers=stack(n_layers, enc_layer), layernorm_embedding=ln(d))
    dec = Node(embed_tokens=shared, embed_positions=emb(130, d),
               layers=stack(n_layers, dec_layer), layernorm_embedding=ln(d))
    head = lin(d, v, bias=False)
    head.weight = shared.weight
    return Node(model=Node(shared=shared, encoder=enc, decoder=dec), lm_head=head,
                final_logits_bias=torch.zeros(1, v))


TRANSFORMER_FAMILIES = {
    # family: (kind, builder(v, d, layers, ff, variant))
    "bert": ("encoder", lambda v, d, n, ff, var: bert_like("bert", v, d, n, ff,
                                                           "mlm" if var % 2 == 0 else "cls")),
    "roberta": ("encoder", lambda v, d, n, ff, var: bert_like("roberta", v, d, n, ff,
                                                              "mlm" if var % 2 == 0 else "cls3")),
    "distilbert": ("encoder", lambda v, d, n, ff, var: distilbert(v, d, n, ff,
                                                                  "mlm" if var % 2 == 0 else "cls")),
    "gpt2": ("decoder", lambda v, d, n, ff, var: gpt2(v, d, n, ff, legacy_buffers=var % 2 == 0)),
    "llama": ("decoder", lambda v, d, n, ff, var: llama(v, d, n, ff, kv_heads_div=1 + var % 2,
                                                        inv_freq=var % 3 == 0)),
    "qwen2": ("decoder", lambda v, d, n, ff, var: llama(v, d, n, ff, kv_heads_div=2,
                                                        qkv_bias=True, tie=True,
                                                        inv_freq=False)),
    "opt": ("decoder", lambda v, d, n, ff, var: opt(v, d, n, ff)),
    "t5": ("encoder-decoder", lambda v, d, n, ff, var: t5(v, d, n, ff, gated=var % 2 == 1)),
    "bart": ("encoder-decoder", lambda v, d, n, ff, var: bart(v, d, n, ff)),
}


def build_transformer(family: str, vocab: int, hidden: int, layers: int,
                      variant: int) -> nn.Module:
    return TRANSFORMER_FAMILIES[family][1](vocab, hidden, layers, hidden * 4, variant)


def shard_state_dict(sd: "OrderedDict[str, torch.Tensor]", n: int) -> list[dict]:
    """HF-style sharding: plain dicts, keys in order, split evenly."""
    keys = list(sd)
    per = -(-len(keys) // n)
    return [{k: sd[k] for k in keys[i * per:(i + 1) * per]} for i in range(n)]


def gen_transformer(ctx: Ctx) -> None:
    p = ctx.params
    model = build_transformer(p["family"], p["vocab"], p["hidden"], p["layers"], p["variant"])
    model.eval()
    name = p["name"]
    for save in p["saves"]:
        dtype = save["dtype"]
        m = model.to(DTYPES[dtype])
        sd = m.state_dict()
        extra = {"dtype": dtype, "save": save["kind"]}
        if save["kind"] == "zip":
            out = ctx.path(f"{name}/{save.get('file', 'pytorch_model.bin')}")
            torch.save(sd, out)
            ctx.emit(out, "torch", extra)
        elif save["kind"] == "legacy":
            out = ctx.path(f"{name}/{save.get('file', 'pytorch_model.bin')}")
            legacy_save(sd, out)
            ctx.emit(out, "torch", extra)
        elif save["kind"] == "sharded":
            n = save["shards"]
            shards = shard_state_dict(sd, n)
            weight_map, total = {}, 0
            for i, shard in enumerate(shards, 1):
                fname = f"pytorch_model-{i:05d}-of-{n:05d}.bin"
                out = ctx.path(f"{name}-sharded/{fname}")
                torch.save(shard, out)
                for k, t in shard.items():
                    weight_map[k] = fname
                    total += t.numel() * t.element_size()
                ctx.emit(out, "torch", dict(extra, shard=i, shards=n))
            index = ctx.path(f"{name}-sharded/pytorch_model.bin.index.json")
            index.write_text(json.dumps({"metadata": {"total_size": total},
                                         "weight_map": weight_map}, indent=2,
                                        sort_keys=True) + "\n")
        else:
            raise ValueError(f"unknown save kind {save['kind']}")
        model = model.float()


# --- vision ------------------------------------------------------------------

def _small_resnet(block: str, layers: list[int], width: int, num_classes: int) -> nn.Module:
    """A torchvision ResNet (real class, real names) with a narrow stem."""
    from torchvision.models import resnet as R
    blk = R.BasicBlock if block == "basic" else R.Bottleneck
    m = R.ResNet.__new__(R.ResNet)
    nn.Module.__init__(m)
    m._norm_layer = nn.BatchNorm2d
    m.inplanes, m.dilation, m.groups, m.base_width = width, 1, 1, 64
    m.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    m.bn1 = nn.BatchNorm2d(width)
    m.relu = nn.ReLU(inplace=True)
    m.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    m.layer1 = m._make_layer(blk, width, layers[0])
    m.layer2 = m._make_layer(blk, width * 2, layers[1], stride=2)
    m.layer3 = m._make_layer(blk, width * 4, layers[2], stride=2)
    m.layer4 = m._make_layer(blk, width * 8, layers[3], stride=2)
    m.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    m.fc = nn.Linear(width * 8 * blk.expansion, num_classes)
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
    return m


def _small_vgg(cfg: list, num_classes: int, bn: bool) -> nn.Module:
    """A torchvision VGG (real class and names) with narrow features."""
    from torchvision.models import vgg as V
    m = V.VGG.__new__(V.VGG)
    nn.Module.__init__(m)
    m.features = V.make_layers(cfg, batch_norm=bn)
    m.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    c = [x for x in cfg if x != "M"][-1]
    m.classifier = nn.Sequential(nn.Linear(c * 49, 64), nn.ReLU(True), nn.Dropout(0.5),
                                 nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(0.5),
                                 nn.Linear(64, num_classes))
    return m


def build_vision(arch: str, num_classes: int, width: int) -> nn.Module:
    import torchvision.models as M
    if arch == "resnet18":
        return M.resnet18(weights=None, num_classes=num_classes)
    if arch == "resnet-basic":
        return _small_resnet("basic", [1 + width % 2, 1, 1, 1], 4 * width, num_classes)
    if arch == "resnet-bottleneck":
        return _small_resnet("bottleneck", [1, 2, 1, 1], 4 * width, num_classes)
    if arch == "vgg":
        return _small_vgg([2 * width, "M", 4 * width, "M", 8 * width, 8 * width, "M"],
                          num_classes, bn=width % 2 == 0)
    if arch == "mobilenet_v2":
        return M.mobilenet_v2(weights=None, num_classes=num_classes,
                              width_mult=[0.25, 0.35, 0.5][width % 3])
    if arch == "mobilenet_v3_small":
        return M.mobilenet_v3_small(weights=None, num_classes=num_classes)
    if arch == "mobilenet_v3_large":
        return M.mobilenet_v3_large(weights=None, num_classes=num_classes, width_mult=0.25)
    if arch == "squeezenet":
        return (M.squeezenet1_0 if width % 2 else M.squeezenet1_1)(weights=None,
                                                                   num_classes=num_classes)
    if arch == "shufflenet_v2":
        return M.shufflenet_v2_x0_5(weights=None, num_classes=num_classes)
    if arch == "mnasnet":
        return M.mnasnet0_5(weights=None, num_classes=num_classes)
    if arch == "efficientnet":
        from torchvision.models import efficientnet as E
        setting, last = E._efficientnet_conf("efficientnet_b0", width_mult=0.25,
                                             depth_mult=0.35)
        return E.EfficientNet(setting, 0.2, num_classes=num_classes, last_channel=last)
    if arch == "regnet":
        from torchvision.models.regnet import RegNet, BlockParams
        return RegNet(BlockParams.from_init_params(depth=3 + width % 3, w_0=8, w_a=8.0,
                                                   w_m=2.0, group_width=8),
                      num_classes=num_classes)
    if arch == "densenet":
        from torchvision.models.densenet import DenseNet
        return DenseNet(growth_rate=4 * width, block_config=(2, 2, 2, 2),
                        num_init_features=8 * width, num_classes=num_classes)
    if arch == "vit":
        from torchvision.models.vision_transformer import VisionTransformer
        return VisionTransformer(image_size=32, patch_size=8, num_layers=1 + width % 3,
                                 num_heads=2, hidden_dim=16 * width, mlp_dim=32 * width,
                                 num_classes=num_classes)
    if arch == "convnext":
        from torchvision.models.convnext import ConvNeXt, CNBlockConfig
        return ConvNeXt([CNBlockConfig(8 * width, 16 * width, 1),
                         CNBlockConfig(16 * width, None, 1)], num_classes=num_classes)
    if arch == "swin":
        from torchvision.models.swin_transformer import SwinTransformer
        return SwinTransformer(patch_size=[4, 4], embed_dim=8 * width, depths=[1, 1],
                               num_heads=[1, 2], window_size=[2, 2], num_classes=num_classes)
    if arch == "lenet":
        return Node(conv1=nn.Conv2d(1, 6, 5), conv2=nn.Conv2d(6, 16, 5),
                    fc1=lin(16 * 16, 120), fc2=lin(120, 84), fc3=lin(84, num_classes))
    if arch == "simple-cnn":
        w = 8 * width
        return Node(features=nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w),
            nn.ReLU(), nn.AdaptiveAvgPool2d(1)),
            classifier=lin(2 * w, num_classes))
    raise ValueError(f"unknown vision arch {arch}")


def _warm_bn(model: nn.Module) -> None:
    """Run a couple of batches in train mode so BatchNorm running stats and
    num_batches_tracked look trained, not freshly initialised."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    if not hasattr(model, "forward") or isinstance(model, Node):
        return
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 3, 64, 64))
    model.eval()


def gen_vision(ctx: Ctx) -> None:
    p = ctx.params
    model = build_vision(p["arch"], p["num_classes"], p["width"])
    if p.get("warm_bn"):
        _warm_bn(model)
    model.eval()
    name = p["name"]
    for save in p["saves"]:
        kind, dtype = save["kind"], save.get("dtype", "fp32")
        m = model.to(DTYPES[dtype])
        extra = {"save": kind, "dtype": dtype}
        if kind == "state_dict":
            out = ctx.path(f"{name}/{save['file']}")
            torch.save(m.state_dict(), out)
        elif kind == "state_dict_legacy":
            out = ctx.path(f"{name}/{save['file']}")
            legacy_save(m.state_dict(), out)
        elif kind == "state_dict_tar":  # the pre-zip, pre-legacy-stream tar format
            out = ctx.path(f"{name}/{save['file']}")
            legacy_tar_save(m.state_dict(), out)
        elif kind == "wrapped":  # {'state_dict': ..., 'arch': ...} as hub repos ship
            out = ctx.path(f"{name}/{save['file']}")
            torch.save({"arch": p["arch"], "state_dict": m.state_dict(),
                        "num_classes": p["num_classes"], "best_acc1": torch.tensor(
                            round(random.uniform(50, 90), 2))}, out)
        elif kind == "module":
            out = ctx.path(f"{name}/{save['file']}")
            torch.save(m, out)
        elif kind == "module_legacy":
            out = ctx.path(f"{name}/{save['file']}")
            legacy_save(m, out)
        else:
            raise ValueError(kind)
        ctx.emit(out, "torch", extra)
        model = model.float()


# --- whole modules and TorchScript ------------------------------------------

def build_module(kind: str, size: int) -> tuple[nn.Module, torch.Tensor | tuple]:
    """Standard-layer models (only torch.nn classes, so whole-module pickles
    load anywhere torch is installed) and an example input for tracing."""
    s = size
    if kind == "mlp":
        layers: list[nn.Module] = [nn.Linear(8 * s, 16 * s), nn.ReLU()]
        for _ in range(s % 3):
            layers += [nn.Linear(16 * s, 16 * s), nn.GELU(), nn.Dropout(0.1)]
        layers += [nn.Linear(16 * s, 4)]
        return nn.Sequential(*layers), torch.randn(2, 8 * s)
    if kind == "cnn":
        return nn.Sequential(nn.Conv2d(3, 4 * s, 3), nn.BatchNorm2d(4 * s), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Conv2d(4 * s, 8 * s, 3), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(8 * s, 10)), torch.randn(2, 3, 16, 16)
    if kind == "lstm":
        return nn.LSTM(4 * s, 8 * s, num_layers=1 + s % 2, batch_first=True), \
            torch.randn(2, 5, 4 * s)
    if kind == "gru":
        return nn.GRU(4 * s, 8 * s, bidirectional=s % 2 == 0, batch_first=True), \
            torch.randn(2, 5, 4 * s)
    if kind == "transformer-encoder":
        layer = nn.TransformerEncoderLayer(d_model=8 * s, nhead=2, dim_feedforward=16 * s,
                                           batch_first=True)
        return nn.TransformerEncoder(layer, num_layers=1 + s % 2), torch.randn(2, 5, 8 * s)
    if kind == "embedding-bag":
        return nn.Sequential(nn.EmbeddingBag(100 * s, 8 * s, mode="mean"),
                             nn.Linear(8 * s, 2)), torch.randint(0, 100 * s, (2, 6))
    if kind == "autoencoder":
        return nn.Sequential(nn.Linear(16 * s, 4 * s), nn.Tanh(), nn.Linear(4 * s, 16 * s),
                             nn.Sigmoid()), torch.randn(2, 16 * s)
    if kind == "conv1d":
        return nn.Sequential(nn.Conv1d(1, 4 * s, 5), nn.ReLU(), nn.Conv1d(4 * s, 4 * s, 3),
                             nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(4 * s, 3)), \
            torch.randn(2, 1, 32)
    raise ValueError(kind)


# torch.jit.trace records the Python call stack (file:line of every frame)
# in the archive's debug_pkl.  To make traced files independent of where the
# repository lives and of how the task was scheduled, the trace runs in a
# fresh thread whose only non-library frame is this fixed-name snippet.
_TRACE_SRC = """
def run_trace(torch, model, example, out, errors):
    try:
        with torch.no_grad():
            traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, out)
    except BaseException as e:
        errors.append(e)
"""
_TRACE_NS: dict[str, Any] = {}
exec(compile(_TRACE_SRC, "<dynahug-corpus-trace>", "exec"), _TRACE_NS)


def trace_and_save(model: nn.Module, example: Any, out) -> None:
    import threading
    errors: list[BaseException] = []
    t = threading.Thread(target=_TRACE_NS["run_trace"],
                         args=(torch, model, example, str(out), errors))
    t.start()
    t.join()
    if errors:
        raise errors[0]


def gen_module(ctx: Ctx) -> None:
    p = ctx.params
    model, example = build_module(p["kind"], p["size"])
    model.eval()
    for save in p["saves"]:
        out = ctx.path(f"{p['name']}/{save['file']}")
        extra = {"save": save["kind"]}
        if save["kind"] == "module":
            torch.save(model, out)
        elif save["kind"] == "module_legacy":
            legacy_save(model, out)
        elif save["kind"] == "script":
            torch.jit.save(torch.jit.script(model), out)
        elif save["kind"] == "trace":
            trace_and_save(model, example, out)
        else:
            raise ValueError(save["kind"])
        ctx.emit(out, "torch", extra)


# --- training checkpoints ----------------------------------------------------

def _train_steps(model: nn.Module, opt: torch.optim.Optimizer, sched, steps: int,
                 in_dim: int, plateau: bool = False) -> float:
    loss_v = 0.0
    for _ in range(steps):
        x = torch.randn(4, in_dim)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_v = float(loss)
        if sched is not None:
            sched.step(loss_v) if plateau else sched.step()
    return loss_v


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=0.9)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr)
    raise ValueError(name)


def make_scheduler(name: str, opt: torch.optim.Optimizer, total: int):
    S = torch.optim.lr_scheduler
    if name == "none":
        return None
    if name == "step":
        return S.StepLR(opt, step_size=2, gamma=0.5)
    if name == "cosine":
        return S.CosineAnnealingLR(opt, T_max=total)
    if name == "onecycle":
        cycle = "betas" in opt.defaults or opt.defaults.get("momentum", 0) > 0
        return S.OneCycleLR(opt, max_lr=0.01, total_steps=total + 1, cycle_momentum=cycle)
    if name == "plateau":
        return S.ReduceLROnPlateau(opt, patience=1)
    if name == "exponential":
        return S.ExponentialLR(opt, gamma=0.9)
    if name == "linear-warmup":  # what HF's get_linear_schedule_with_warmup builds
        warm = max(1, total // 5)
        return S.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / total)))
    raise ValueError(name)


def rng_states() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "cpu": torch.get_rng_state()}


def _fake_training_args(kind: str, mods: dict, params: dict):
    """Builds a TrainingArguments-like dataclass instance whose class lives in
    a fake ``transformers`` (or ``trl``) module.  Must be pickled while the
    fake modules ``mods`` are registered (inside the ``fake_modules`` block)."""

    class IntervalStrategy(str, enum.Enum):
        NO = "no"
        STEPS = "steps"
        EPOCH = "epoch"

    class SchedulerType(str, enum.Enum):
        LINEAR = "linear"
        COSINE = "cosine"
        CONSTANT = "constant"

    class OptimizerNames(str, enum.Enum):
        ADAMW_HF = "adamw_hf"
        ADAMW_TORCH = "adamw_torch"
        ADAFACTOR = "adafactor"

    class HubStrategy(str, enum.Enum):
        END = "end"
        EVERY_SAVE = "every_save"

    tu, ta = mods["transformers.trainer_utils"], mods["transformers.training_args"]
    place(IntervalStrategy, tu)
    place(SchedulerType, tu)
    place(HubStrategy, tu)
    place(OptimizerNames, ta)

    @dataclasses.dataclass
    class TrainingArguments:
        output_dir: str
        overwrite_output_dir: bool = False
        do_train: bool = False
        do_eval: bool = False
        evaluation_strategy: Any = IntervalStrategy.NO
        per_device_train_batch_size: int = 8
        per_device_eval_batch_size: int = 8
        gradient_accumulation_steps: int = 1
        learning_rate: float = 5e-5
        weight_decay: float = 0.0
        adam_beta1: float = 0.9
        adam_beta2: float = 0.999
        adam_epsilon: float = 1e-8
        max_grad_norm: float = 1.0
        num_train_epochs: float = 3.0
        max_steps: int = -1
        lr_scheduler_type: Any = SchedulerType.LINEAR
        warmup_ratio: float = 0.0
        warmup_steps: int = 0
        logging_dir: str = ""
        logging_strategy: Any = IntervalStrategy.STEPS
        logging_steps: int = 500
        save_strategy: Any = IntervalStrategy.STEPS
        save_steps: int = 500
        save_total_limit: Any = None
        seed: int = 42
        fp16: bool = False
        bf16: bool = False
        local_rank: int = -1
        dataloader_num_workers: int = 0
        run_name: Any = None
        remove_unused_columns: bool = True
        label_names: Any = None
        load_best_model_at_end: bool = False
        metric_for_best_model: Any = None
        report_to: list = dataclasses.field(default_factory=list)
        optim: Any = OptimizerNames.ADAMW_HF
        push_to_hub: bool = False
        hub_strategy: Any = HubStrategy.EVERY_SAVE
        hub_token: Any = None
        gradient_checkpointing: bool = False
        _n_gpu: int = 0

    place(TrainingArguments, ta)
    cls = TrainingArguments
    if kind == "seq2seq":
        @dataclasses.dataclass
        class Seq2SeqTrainingArguments(TrainingArguments):
            sortish_sampler: bool = False
            predict_with_generate: bool = False
            generation_max_length: Any = None
            generation_num_beams: Any = None
        cls = place(Seq2SeqTrainingArguments, ta)
    elif kind == "sft":
        @dataclasses.dataclass
        class SFTConfig(TrainingArguments):
            dataset_text_field: str = "text"
            packing: bool = False
            max_seq_length: Any = 1024
        cls = place(SFTConfig, mods["trl.trainer.sft_config"])
    r = random.Random(params["args_seed"])
    run = params.get("run", params["name"])
    return cls(
        output_dir=f"./results/{run}", overwrite_output_dir=r.random() < 0.5,
        do_train=True, do_eval=r.random() < 0.7,
        evaluation_strategy=r.choice(list(IntervalStrategy)),
        per_device_train_batch_size=r.choice([4, 8, 16, 32]),
        learning_rate=r.choice([1e-5, 2e-5, 3e-5, 5e-5, 1e-4]),
        weight_decay=r.choice([0.0, 0.01, 0.1]), num_train_epochs=float(r.randint(1, 10)),
        lr_scheduler_type=r.choice(list(SchedulerType)), warmup_ratio=r.choice([0.0, 0.06, 0.1]),
        logging_dir=f"./logs/{run}", logging_steps=r.choice([10, 50, 100, 500]),
        save_steps=r.choice([500, 1000, 2000]), save_total_limit=r.choice([None, 2, 3]),
        seed=r.choice([42, 0, 1234]), fp16=r.random() < 0.4,
        report_to=r.choice([[], ["tensorboard"], ["wandb"]]),
        optim=r.choice(list(OptimizerNames)), run_name=run,
        load_best_model_at_end=r.random() < 0.3)


def training_args_modules(kind: str) -> list[str]:
    mods = ["transformers.trainer_utils", "transformers.training_args"]
    if kind == "sft":
        mods.append("trl.trainer.sft_config")
    return mods


def save_training_args(ctx: Ctx, rel: str, kind: str, container: str, extra: dict) -> None:
    import pickle
    mods = training_args_modules(kind)
    out = ctx.path(rel)
    with fake_modules(*mods) as added:
        args = _fake_training_args(kind, added, ctx.params | {"args_seed": ctx.seed})
        if container == "torch":
            torch.save(args, out)
        else:
            with open(out, "wb") as f:
                pickle.dump(args, f, protocol=4)
    top = sorted({m.split(".")[0] for m in mods})
    ctx.emit(out, "torch" if container == "torch" else "pickle",
             dict(extra, training_args=kind, container=container,
                  missing_modules=top))


def _ckpt_model(kind: str, size: int) -> tuple[nn.Module, int]:
    if kind == "mlp":
        return nn.Sequential(nn.Linear(8 * size, 16 * size), nn.ReLU(),
                             nn.Linear(16 * size, 4)), 8 * size
    if kind == "transformer":
        m = llama(200 * size, 16 * size, 2, 32 * size)
        head = nn.Linear(16 * size, 4)

        class _Wrap(nn.Module):  # only used to produce gradients
            def __init__(self):
                super().__init__()
                self.inner, self.head = m, head

            def forward(self, x):
                return self.head(self.inner.model.layers[0].mlp.down_proj(
                    self.inner.model.layers[0].mlp.up_proj(x)))
        return _Wrap(), 16 * size
    raise ValueError(kind)


def gen_checkpoint(ctx: Ctx) -> None:
    p = ctx.params
    model, in_dim = _ckpt_model(p["model"], p["size"])
    opt = make_optimizer(p["optimizer"], model.parameters(), p["lr"])
    sched = make_scheduler(p["scheduler"], opt, p["steps"] * 2)
    loss = _train_steps(model, opt, sched, p["steps"], in_dim, p["scheduler"] == "plateau")
    inner = model.inner if hasattr(model, "inner") else model
    sd = inner.state_dict()
    style, name = p["style"], p["name"]
    if style == "hf-trainer":
        base = f"{name}/checkpoint-{p['steps'] * 100}"
        files = {"pytorch_model.bin": sd, "optimizer.pt": opt.state_dict(),
                 "scheduler.pt": sched.state_dict() if sched else {},
                 "rng_state.pth": rng_states()}
        for fname, obj in files.items():
            out = ctx.path(f"{base}/{fname}")
            torch.save(obj, out)
            ctx.emit(out, "torch", {"file_role": fname})
        save_training_args(ctx, f"{base}/training_args.bin", "seq2seq" if p["size"] % 2 else
                           "trainer", "torch", {"file_role": "training_args.bin"})
        return
    epoch = p["steps"] // 2
    if style == "plain":
        obj = {"epoch": epoch, "model_state_dict": sd, "optimizer_state_dict": opt.state_dict(),
               "loss": loss}
        if sched is not None:
            obj["scheduler_state_dict"] = sched.state_dict()
        if p.get("rng"):
            obj["rng_state"] = rng_states()
    elif style == "lightning":
        obj = {"epoch": epoch, "global_step": p["steps"],
               "pytorch-lightning_version": "1.9.4",
               "state_dict": OrderedDict(("model." + k, v) for k, v in sd.items()),
               "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {
                   "total": {"ready": epoch, "completed": epoch}}}},
               "callbacks": {"ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min'}": {
                   "monitor": "val_loss", "best_model_score": torch.tensor(loss),
                   "best_model_path": f"checkpoints/epoch={epoch}.ckpt"}},
               "optimizer_states": [opt.state_dict()],
               "lr_schedulers": [sched.state_dict()] if sched else [],
               "hparams_name": "kwargs",
               "hyper_parameters": {"lr": p["lr"], "hidden": 16 * p["size"],
                                    "optimizer": p["optimizer"]}}
    elif style == "timm":
        obj = {"epoch": epoch, "arch": p["model"], "state_dict": sd,
               "optimizer": opt.state_dict(), "version": 2,
               "args": argparse.Namespace(lr=p["lr"], opt=p["optimizer"],
                                          sched=p["scheduler"], epochs=epoch * 2,
                                          batch_size=32, model=p["model"], amp=False),
               "metric": round(1.0 / (1.0 + loss), 4)}
    else:
        raise ValueError(style)
    out = ctx.path(f"{name}/{p['file']}")
    if p.get("legacy"):
        legacy_save(obj, out)
    elif p.get("tar"):
        legacy_tar_save(obj, out)
    else:
        torch.save(obj, out)
    ctx.emit(out, "torch")


def gen_training_args(ctx: Ctx) -> None:
    p = ctx.params
    save_training_args(ctx, f"{p['name']}/training_args.bin", p["kind"], p["container"], {})


# --- tokenizers / vocabularies ----------------------------------------------

def _words(r: random.Random, n: int) -> list[str]:
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    out, seen = [], set()
    while len(out) < n:
        w = "".join(r.choice(letters[: 6 + r.randint(0, 20)]) for _ in range(r.randint(1, 8)))
        if r.random() < 0.3:
            w = ("Ġ" if r.random() < 0.5 else "##") + w
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def gen_tokenizer(ctx: Ctx) -> None:
    import pickle
    p = ctx.params
    r = random.Random(ctx.seed)
    specials = {"bert": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                "gpt2": ["<|endoftext|>"], "t5": ["<pad>", "</s>", "<unk>"]}[p["style"]]
    words = specials + _words(r, p["vocab"] - len(specials))
    vocab = {w: i for i, w in enumerate(words)}
    kind = p["kind"]
    if kind == "vocab":
        obj: Any = vocab
    elif kind == "bpe":
        merges = [(a, b) for a, b in zip(words[len(specials)::2], words[len(specials) + 1::2])]
        obj = {"vocab": vocab, "merges": merges[: p["vocab"] // 3],
               "special_tokens": {f"{s.strip('[]<>|/')}_token": s for s in specials},
               "model_max_length": r.choice([512, 1024, 2048])}
    elif kind == "full":
        obj = {"vocab": vocab, "ids_to_tokens": OrderedDict((i, w) for w, i in vocab.items()),
               "added_tokens_encoder": {f"<extra_id_{i}>": len(vocab) + i for i in range(4)},
               "do_lower_case": r.random() < 0.5, "special_tokens_map": {
                   "pad_token": specials[0], "unk_token": specials[-1]},
               "frequencies": np.array([r.randint(1, 10000) for _ in range(len(vocab))],
                                       dtype=np.int64)}
    else:
        raise ValueError(kind)
    out = ctx.path(f"{p['name']}/{p['file']}")
    if p["container"] == "torch":
        torch.save(obj, out)
        lib = "torch"
    else:
        with open(out, "wb") as f:
            pickle.dump(obj, f, protocol=p["protocol"])
        lib = "pickle"
    ctx.emit(out, lib)
