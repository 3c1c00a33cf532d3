"""torchrun's variables, read before the processes join (bad ones are a LaunchError, exit 2).
The launches themselves are in tests/distributed/."""

from __future__ import annotations

import pytest

from epochal.errors import ConfigError, LaunchError
from epochal_torch.launch import launch_env


def test_no_launcher_means_one_process():
    assert launch_env({}) is None
    assert launch_env({"WORLD_SIZE": "1", "RANK": "0"}) is None


def test_torchrun_variables_are_read():
    env = launch_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (3, 4, 1, 2)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RANK": "1"}, "WORLD_SIZE is not set although RANK or WORLD_SIZE is: start"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 and WORLD_SIZE=2 do not fit"),
        ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' is not an integer"),
        ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"}, "LOCAL"),
    ],
)
def test_inconsistent_launch_variables_are_a_config_error(environ, message):
    with pytest.raises(LaunchError, match=message) as info:
        launch_env(environ)
    assert isinstance(info.value, ConfigError)  # the CLI exits 2: bad input
