import inspect

import pytest

from deqfusion.errors import UserError
from deqfusion.experiments.fusion_spec import (
    fusion_parameters,
    parse_fusion_spec,
    parse_option_value,
    resolve_fusion_spec,
    resolve_fusion_specs,
)
from deqfusion.fusion import DEQFusion
from deqfusion.fusion.registry import fusion_class

PRESETS = {"deq": ("deq", {"injection": "sum"}), "deq-no-unimodal": ("deq", {"injection": "sum", "unimodal": False})}


def test_option_values():
    assert parse_option_value("true") is True and parse_option_value("None") is None
    assert parse_option_value("1e-4") == 1e-4 and parse_option_value("(1, 2)") == (1, 2)
    assert parse_option_value("phantom") == "phantom"


def test_parse_labels_and_syntax_errors():
    spec = parse_fusion_spec("deq:f_tol=1e-4,b_mode=phantom")
    assert (spec.label, spec.name, spec.options) == ("deq_f_tol-0.0001_b_mode-phantom", "deq",
                                                    {"f_tol": 1e-4, "b_mode": "phantom"})
    for bad in (":a=1", "deq:phantom", "deq:1x=2"):
        with pytest.raises(UserError):
            parse_fusion_spec(bad)


def test_parameters_follow_the_class_signature():
    own = set(inspect.signature(DEQFusion.__init__).parameters) - {"self", "in_dims", "out_dim", "names"}
    assert set(fusion_parameters("deq")) == own
    # the unrolled fusion passes **kwargs on to DEQFusion: its options are its own plus DEQFusion's
    assert set(fusion_parameters("unrolled")) == own | {"unrolled_steps"}
    assert set(fusion_parameters("lowrank")) == {"rank"} and fusion_class("lowrank").__name__ == "LowRankTensorFusion"
    with pytest.raises(ValueError, match="unknown fusion 'attn'"):
        fusion_class("attn")


def test_resolve_against_presets_and_signature():
    r = resolve_fusion_spec("deq:f_tol=1e-4,b_mode=phantom", PRESETS)
    assert r == {"label": "deq_f_tol-0.0001_b_mode-phantom", "name": "deq", "fusion": "deq",
                 "options": {"injection": "sum", "f_tol": 1e-4, "b_mode": "phantom"}}
    assert resolve_fusion_spec("deq-no-unimodal:injection=weighted", PRESETS)["options"] == {
        "injection": "weighted", "unimodal": False}
    assert resolve_fusion_spec("early", PRESETS, others=("early",))["fusion"] == "early"
    assert resolve_fusion_spec("unrolled:unrolled_steps=3,f_tol=1e-3")["options"] == {"unrolled_steps": 3,
                                                                                       "f_tol": 1e-3}
    with pytest.raises(UserError, match="has no option 'f_tl'"):
        resolve_fusion_spec("deq:f_tl=1e-4", PRESETS)
    with pytest.raises(UserError, match="f_max_iter=0.5 should be a int"):
        resolve_fusion_spec("deq:f_max_iter=0.5")
    with pytest.raises(UserError, match="unimodal='no' should be a bool"):
        resolve_fusion_spec("deq:unimodal=no")
    with pytest.raises(UserError, match="unknown fusion 'attn'"):
        resolve_fusion_spec("attn", PRESETS)
    with pytest.raises(UserError, match="early takes no options"):
        resolve_fusion_spec("early:rank=2", others=("early",))
    with pytest.raises(UserError, match="same setting twice"):
        resolve_fusion_specs(["deq", "deq"], PRESETS)
