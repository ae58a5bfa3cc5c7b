"""One declarative validator (issue 13): presets, train configs and family arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from flambient.errors import ConfigError, ModelError
from flambient.nets import registry
from flambient.nets.registry import FlambientNet, ModelSpec, create_model, load_model, register, save_model
from flambient.schema import Field, validate
from flambient.training import make_config


def test_field_checks_types_ranges_and_choices() -> None:
    schema = {"q": Field(int, 95, 1, 100), "f": Field(str, "jpeg", choices=("jpeg", "tiff16")),
              "x": Field(float, None, 0.0, 1.0, optional=True), "b": Field(bool, False)}
    assert validate({"q": 90, "f": "JPEG", "x": 1}, schema) == {"q": 90, "f": "jpeg", "x": 1.0}
    assert validate({}, schema, defaults=True) == {"q": 95, "f": "jpeg", "x": None, "b": False}
    for doc, needle in [({"q": 101}, "out.q: 101 is out of range"), ({"q": True}, "out.q: bad value True"),
                        ({"f": "png"}, "allowed: jpeg, tiff16"), ({"b": 1}, "out.b: bad value 1"),
                        ({"qq": 1}, "out.qq: unknown key"), ({"x": "a"}, "a number from 0 to 1 or null")]:
        with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
            validate(doc, schema, Path("p.yaml"), "out")


class _Loose(FlambientNet):
    """A family written the usual way, swallowing unknown arguments in ``**extra``."""

    spec = ModelSpec(family="_schema_loose", description="test family")

    def __init__(self, size: int = 4, gain: float = 1.0, **extra: Any) -> None:
        super().__init__(size=size, gain=gain, **extra)
        self.w = torch.nn.Parameter(torch.ones(size) * gain)


@pytest.fixture
def loose_family():  # type: ignore[no-untyped-def]
    """Register the test family for one test only (a new family gets the check without edits)."""
    register(_Loose)
    yield
    registry._REGISTRY.pop(_Loose.spec.family, None)


def test_every_family_rejects_unknown_and_mistyped_arguments(loose_family: None) -> None:
    for family, typo in [("bilateral", "gird_size"), ("lut", "lut_sise"), ("nafnet", "widht"),
                         ("diffusion", "stpes"), ("_schema_loose", "szie")]:
        with pytest.raises(ConfigError, match=f"model_config.{typo}: unknown key"):
            create_model(family, **{typo: 8})
    with pytest.raises(ConfigError, match="model_config.size: bad value 'big'"):
        create_model("_schema_loose", size="big")
    net = create_model("_schema_loose", size=3, gain=2)  # ints accepted for floats
    assert net.config == {"size": 3, "gain": 2.0}


def test_constructor_value_errors_become_config_errors() -> None:
    with pytest.raises(ConfigError, match="model_config does not fit family 'diffusion'.*steps"):
        create_model("diffusion", steps=9)


def test_model_file_with_a_stray_argument_is_a_model_error(tmp_path: Path) -> None:
    net = create_model("bilateral", width=8, hidden=8, grid_size=4, luma_bins=4)
    net.config["gird_size"] = 4  # what the old constructors stored silently
    save_model(net, tmp_path / "m")
    with pytest.raises(ModelError, match="gird_size"):
        load_model(tmp_path / "m")


def test_train_config_errors_name_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "t.yaml"
    for doc, needle in [({"batch": "eight"}, "batch: bad value 'eight'"), ({"amp": "yes"}, "amp: bad value"),
                        ({"model_config": [1]}, "model_config: bad value"),
                        ({"model_config": {"gird_size": 8}}, "model_config.gird_size: unknown key"),
                        ({"device": "tpu"}, "device: unknown device 'tpu'")]:
        cfg.write_text(yaml.safe_dump(doc))
        with pytest.raises(ConfigError, match=needle) as ei:
            make_config(cfg)
        assert "\n" not in str(ei.value)
    with pytest.raises(ConfigError, match="lr: bad value"):
        make_config(None, lr="fast")
    assert make_config(None, device="gpu").device == "cuda"
