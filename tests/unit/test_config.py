import argparse
import dataclasses

import pytest

from hpcgan.config import SECTIONS, RunConfig, add_config_arguments, config_from_args
from hpcgan.errors import UsageError


def parse(*argv):
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    return config_from_args(p.parse_args(list(argv)))


def test_every_field_has_a_flag_and_defaults_round_trip():
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    flags = {a for action in p._actions for a in action.option_strings}
    for cls in SECTIONS.values():
        for f in dataclasses.fields(cls):
            assert "--" + f.name.replace("_", "-") in flags
    assert parse() == RunConfig()


def test_flags_set_fields_and_booleans_have_negations():
    cfg = parse("--algo", "dqgan", "--compressor", "sign", "--no-error-feedback", "--steps", "7",
                "--net-latency", "0.005")
    assert cfg.algo.algo == "dqgan" and cfg.comm.compressor == "sign"
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
    (("--ratio", "0"), "--ratio"), (("--ratio", "1.5"), "--ratio"), (("--batch-size", "0"), "--batch-size"),
    (("--gossip-rounds", "0"), "--gossip-rounds"), (("--budget", "-1"), "--budget"),
])
def test_out_of_range_values_are_usage_errors(argv, fragment):
    with pytest.raises(UsageError, match=fragment):
        parse(*argv)


def test_json_from_another_version_is_rejected():
    with pytest.raises(UsageError):
        RunConfig.from_json('{"run": {"no_such_field": 1}}')
