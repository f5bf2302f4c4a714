"""Once-for-all's checkpoint layout: the tensor names of mit-han-lab's ``OFAMobileNetV3`` (the
public ``ofa_mbv3_d234_e346_k357_w1.0`` / ``_w1.2`` supernets) mapped onto ``ofa_mbv3_full``'s
supernet inside a task's model.

once-for-all names its blocks in one flat list: ``blocks.0`` is the fixed first block, then
``blocks.1`` .. ``blocks.20`` the elastic blocks, stage after stage, ``max_depth`` per stage.
Its kernel-transform matrices (``7to5_matrix``, ``5to3_matrix``) are applied with
``F.linear``; nastk multiplies on the right, so they are transposed on the way in. Its
classifier (``feature_mix_layer``, ``classifier.linear``) becomes the classification task's
head with ``head_hidden`` (``pre_logits.0``, ``head``); other tasks' models have no place for
it, and with ``part: body`` it is not loaded anyway.
"""

from __future__ import annotations

from nastk.nn.layouts import KeyTable, Rule, transpose

__all__ = ["ofa_key_table"]

_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"


def ofa_key_table(n_stages: int = 5, max_depth: int = 4) -> KeyTable:
    """The key table of an ``OFAMobileNetV3`` with ``n_stages`` elastic stages of ``max_depth``
    blocks (once-for-all's are 5 and 4)."""
    rules = [
        Rule(r"first_conv\.conv\.weight", "body.stem.0.weight"),
        Rule(rf"first_conv\.bn\.{_BN}", r"body.stem.1.\1"),
        Rule(r"blocks\.0\.conv\.depth_conv\.conv\.weight", "body.first_block.dw.weight"),
        Rule(rf"blocks\.0\.conv\.depth_conv\.bn\.{_BN}", r"body.first_block.dw_bn.\1"),
        Rule(r"blocks\.0\.conv\.point_linear\.conv\.weight", "body.first_block.project.weight"),
        Rule(rf"blocks\.0\.conv\.point_linear\.bn\.{_BN}", r"body.first_block.project_bn.\1"),
    ]
    for s in range(n_stages):
        for j in range(max_depth):
            i = 1 + s * max_depth + j
            ours = f"body.stages.{s}.{j}"
            block = rf"blocks\.{i}\.conv"
            rules += [
                Rule(rf"{block}\.inverted_bottleneck\.conv\.conv\.weight",
                     f"{ours}.expand_conv.weight"),
                Rule(rf"{block}\.inverted_bottleneck\.bn\.bn\.{_BN}", rf"{ours}.expand_bn.\1"),
                Rule(rf"{block}\.depth_conv\.conv\.conv\.weight", f"{ours}.dw.weight"),
                Rule(rf"{block}\.depth_conv\.conv\.(\d+)to(\d+)_matrix",
                     rf"{ours}.dw.transforms.\1to\2", transpose),
                Rule(rf"{block}\.depth_conv\.bn\.bn\.{_BN}", rf"{ours}.dw_bn.\1"),
                Rule(rf"{block}\.depth_conv\.se\.fc\.(reduce|expand)\.(weight|bias)",
                     rf"{ours}.se.\1.\2"),
                Rule(rf"{block}\.point_linear\.conv\.conv\.weight", f"{ours}.project.weight"),
                Rule(rf"{block}\.point_linear\.bn\.bn\.{_BN}", rf"{ours}.project_bn.\1"),
            ]
    rules += [
        Rule(r"final_expand_layer\.conv\.weight", "body.final.0.weight"),
        Rule(rf"final_expand_layer\.bn\.{_BN}", r"body.final.1.\1"),
        Rule(r"feature_mix_layer\.conv\.weight", "pre_logits.0.weight"),
        Rule(r"classifier\.linear\.(weight|bias)", r"head.\1"),
    ]
    return KeyTable("ofa", "once-for-all OFAMobileNetV3", tuple(rules), supernet=True)
