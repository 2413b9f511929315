import argparse
import dataclasses
import typing

import pytest

from hpcgan.algorithms import resolve_config
from hpcgan.config import (SECTION_OF, SECTIONS, Bounds, RunConfig, add_config_arguments, check_fields,
                           config_to_argv, given_values, opt)
from hpcgan.errors import UsageError


def parse(*argv):
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    return resolve_config(given_values(p.parse_args(list(argv))))


def test_every_field_has_a_flag_and_no_flag_means_the_declared_default():
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    flags = {a for action in p._actions for a in action.option_strings}
    for cls in SECTIONS.values():
        for f in dataclasses.fields(cls):
            assert "--" + f.name.replace("_", "-") in flags
    assert given_values(p.parse_args([])) == {}
    assert parse() == RunConfig()   # sync declares no defaults of its own


def test_every_numeric_field_declares_its_range():
    for cls in SECTIONS.values():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if hints[f.name] in (int, float):
                assert f.metadata["bounds"] != Bounds(), f"{f.name} has no bounds"


def test_a_numeric_field_without_bounds_cannot_be_declared():
    @dataclasses.dataclass(frozen=True)
    class Bad:
        x: int = opt(1, "no range")

    with pytest.raises(TypeError, match="declares no bounds"):
        check_fields(Bad())


def test_flags_set_fields_and_booleans_have_negations():
    cfg = parse("--algo", "dqgan", "--compressor", "topk", "--no-error-feedback", "--steps", "7",
                "--net-latency", "0.005")
    assert cfg.algo.algo == "dqgan" and cfg.comm.compressor == "topk"
    assert cfg.comm.error_feedback is False and cfg.run.steps == 7 and cfg.comm.net_latency == 0.005


def test_json_round_trip_and_digest():
    cfg = RunConfig().replace(run={"steps": 11}, comm={"compressor": "topk", "ratio": 0.1})
    assert RunConfig.from_json(cfg.to_json()) == cfg
    assert cfg.digest() == RunConfig.from_json(cfg.to_json()).digest()
    assert cfg.digest() != cfg.replace(run={"steps": 12}).digest()


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().run.steps = 3


@pytest.mark.parametrize("argv, fragment", [
    (("--algo", "dqgan", "--ratio", "0"), "--ratio"), (("--algo", "dqgan", "--ratio", "1.5"), "--ratio"),
    (("--batch-size", "0"), "--batch-size"), (("--algo", "dposg", "--gossip-rounds", "0"), "--gossip-rounds"),
    (("--budget", "-1"), "--budget"), (("--budget", "nan"), "--budget must be finite"),
    (("--log-every", "0"), "--log-every"), (("--algo", "dposg", "--consensus-every", "0"), "--consensus-every"),
    (("--eval-samples", "0"), "--eval-samples"), (("--beta1", "2"), "--beta1"), (("--lr", "nan"), "--lr"),
    (("--z-dim", "0"), "--z-dim"), (("--ckpt-every", "-1"), "--ckpt-every"), (("--eval-every", "-5"), "--eval-every"),
])
def test_out_of_range_values_are_usage_errors(argv, fragment):
    with pytest.raises(UsageError, match=fragment):
        parse(*argv)


def test_every_bad_field_is_named_at_once():
    with pytest.raises(UsageError) as e:
        parse("--z-dim", "0", "--beta1", "2", "--log-every", "0")
    assert all(f in str(e.value) for f in ("--z-dim", "--beta1", "--log-every"))


def test_json_from_another_version_is_rejected():
    with pytest.raises(UsageError):
        RunConfig.from_json('{"run": {"no_such_field": 1}}')


def test_argv_rebuilds_the_fields_it_names():
    cfg = RunConfig().replace(optim={"lr": 2e-4}, run={"force": True})
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    assert RunConfig.from_values(given_values(p.parse_args(config_to_argv(cfg)))) == cfg
    assert config_to_argv(cfg, {"lr", "force"}) == ["--lr", "0.0002", "--force"]
    assert set(SECTION_OF) >= {"lr", "force"}
