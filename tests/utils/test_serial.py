from braingan.nn.config import NetworkConfig
from braingan.training.config import AugmentConfig, TrainConfig


def test_configs_round_trip_through_plain_dicts_and_ignore_unknown_keys():
    net = NetworkConfig(img_resolution=64, channel_base=4096, c_dim=2)
    assert NetworkConfig.from_dict({**net.to_dict(), "from_a_newer_version": 1}) == net
    tc = TrainConfig(batch_size=8, augment=AugmentConfig(mode="fixed", p=0.2, pipe={"xflip": False}))
    assert TrainConfig.from_dict(tc.to_dict()) == tc
    assert isinstance(TrainConfig.from_dict(tc.to_dict()).augment, AugmentConfig)


def test_train_config_reads_the_flat_keys_of_format_1_checkpoints():
    old = {
        "batch_size": 8,
        "total_kimg": 2.0,
        "augment": "fixed",
        "augment_p": 0.3,
        "ada_target": 0.7,
        "ada_interval": 8,
        "ada_kimg": 100.0,
        "augment_kwargs": {"xflip": False},
        "lr_g": 0.001,
    }
    tc = TrainConfig.from_dict(old)
    assert tc.kimg == 2.0 and tc.lr_g == 0.001
    assert tc.augment == AugmentConfig(mode="fixed", p=0.3, target=0.7, interval=8, kimg=100.0, pipe={"xflip": False})
