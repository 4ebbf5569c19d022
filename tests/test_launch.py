import pytest

from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.launch import LaunchRanks, launch_ranks


@pytest.fixture
def env(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)

    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)
    return set_env


def test_a_single_process_is_rank_0_of_1(env):
    assert launch_ranks() == LaunchRanks(0, 1, 0) and not launch_ranks().distributed
    env(WORLD_SIZE="1", RANK="0")
    assert launch_ranks() == LaunchRanks()


def test_the_ranks_of_a_torchrun_launch(env):
    env(WORLD_SIZE="4", RANK="3", LOCAL_RANK="1")
    assert launch_ranks() == LaunchRanks(3, 4, 1) and launch_ranks().distributed


def test_the_local_rank_is_the_rank_where_unset(env):
    env(WORLD_SIZE="2", RANK="1")
    assert launch_ranks().local_rank == 1


@pytest.mark.parametrize("values, message", [({"WORLD_SIZE": "2"}, "RANK is not"),
                                             ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
                                             ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "x"}, "LOCAL_RANK")])
def test_a_malformed_launch_is_refused(env, values, message):
    env(**values)
    with pytest.raises(EvaluationError, match=message):
        launch_ranks()
