import argparse
import copy
import dataclasses
import pickle
import typing

import pytest

from hpcgan.algorithms import resolve_config
from hpcgan.config import (SECTION_OF, SECTIONS, Bounds, RunConfig, add_config_arguments, check_fields,
                           config_to_argv, flag_fields, given_values, opt)
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
        for name in flag_fields(f.name for f in dataclasses.fields(cls)):
            assert "--" + name.replace("_", "-") in flags
    assert {"--ratio", "--levels"} <= flags, "compressor options are flags"
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
    with pytest.raises(TypeError, match="frozen"):
        RunConfig().comm.compressor_options["ratio"] = 0.5
    cfg = RunConfig().replace(comm={"ratio": 0.2})
    assert pickle.loads(pickle.dumps(cfg)) == cfg == copy.deepcopy(cfg), "sent between ranks, copied"


def test_compressor_options_are_stored_complete_and_checked_where_declared():
    cfg = RunConfig().replace(comm={"compressor": "topk", "ratio": 0.1})
    assert cfg.comm.compressor_options == {"levels": 16, "ratio": 0.1} and cfg.value("ratio") == 0.1
    assert '"compressor_options": {"levels": 16, "ratio": 0.1}' in cfg.to_json()
    legacy = cfg.to_json().replace('"compressor_options": {"levels": 16, "ratio": 0.1}', '"levels": 4, "ratio": 0.2')
    assert RunConfig.from_json(legacy).comm.compressor_options == {"levels": 4, "ratio": 0.2}, "older files read"
    with pytest.raises(UsageError, match="--levels must be >= 1"):
        RunConfig.from_values({"levels": 0})
    with pytest.raises(UsageError, match="unknown compressor options"):
        RunConfig().replace(comm={"compressor_options": {"rank": 3}})
    assert "--ratio" in config_to_argv(cfg, {"compressor_options"}) and config_to_argv(cfg, {"steps"}) == [
        "--steps", "1000"]


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
