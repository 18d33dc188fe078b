from braingan.nn.config import NetworkConfig
from braingan.training.config import TrainConfig


def test_configs_round_trip_through_plain_dicts_and_ignore_unknown_keys():
    net = NetworkConfig(img_resolution=64, channel_base=4096, c_dim=2)
    assert NetworkConfig.from_dict({**net.to_dict(), "from_a_newer_version": 1}) == net
    tc = TrainConfig(batch_size=8, augment_kwargs={"xflip": False})
    assert TrainConfig.from_dict(tc.to_dict()) == tc
