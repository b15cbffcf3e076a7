"""The ``taosr1_sync`` V1 trainer: verl's sync PPO/GRPO trainer whose dataloader asks the difficulty
policy which prompts to roll out.

verl 0.9.1 decides which prompts reach rollout in ``PPOTrainer._init_dataloader`` (Random/Sequential
samplers only; the old ``data.sampler.class_path`` plug-in is gone). This trainer, registered with verl's
``@register_trainer``, rebuilds the train loader around a
:class:`~taosr1_verl.sampling.torch_sampler.DifficultySampler` that shares the
:class:`~taosr1_verl.sampling.DifficultyTracker` of :class:`TaoSR1ReplayBuffer`, so every finished group
informs the next selection. The sampler's state (stream positions, RNG, tracker arrays) is saved in verl's
``data.pt`` with the loader's and restored on resume.

Use::

    VERL_USE_EXTERNAL_MODULES=taosr1_verl.integrations.verl.trainer  # or the verl.plugins entry point
    python -m verl.trainer.main_ppo ... trainer.v1.trainer_mode=taosr1_sync \\
        trainer.v1.sampler.custom_sampler.path=pkg://taosr1_verl.integrations.verl.replay_buffer \\
        trainer.v1.sampler.custom_sampler.name=TaoSR1ReplayBuffer \\
        +trainer.v1.sampler.sampler_kwargs.train_batch_size='${data.train_batch_size}'
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from omegaconf import open_dict
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from taosr1_verl import rl_rows
from taosr1_verl.integrations.verl.replay_buffer import BufferOptions, DifficultySampling
from taosr1_verl.sampling import DifficultyTracker, GroupRule, PolicyConfig, SelectionPolicy

logger = logging.getLogger(__name__)

TRAINER_MODE = "taosr1_sync"


def dataset_keys_and_levels(dataframe: Any, schema_name: str = "taosr1",
                            source: str = "train dataset") -> tuple[np.ndarray, np.ndarray]:
    """Tracker key (``extra_info.index``) and class level of every row of an RL dataset's table
    (:mod:`taosr1_verl.rl_rows`).

    A row without ``extra_info.index`` is refused, named as ``<source> row <i>``: verl's ``RLHFDataset`` keys it as index 0, so the replay
    buffer would credit its groups to another prompt than the one the policy picked. A row whose ground truth
    is not a label of the schema is balanced in a class of its own (``UNKNOWN_LEVEL``).

    Example:
        >>> rows = {"extra_info": [{"index": 7, "level": 4}, {"index": 9}],
        ...         "reward_model": [{"ground_truth": "4"}, {"ground_truth": "2"}]}
        >>> [a.tolist() for a in dataset_keys_and_levels(rows)]
        [[7, 9], [4, 2]]
    """
    columns = _columns(dataframe)
    n = len(dataframe[columns[0]]) if columns else 0
    extra = list(dataframe["extra_info"]) if "extra_info" in columns else [None] * n
    rm = list(dataframe["reward_model"]) if "reward_model" in columns else [None] * n
    keys = np.empty(n, dtype=np.int64)
    levels = np.empty(n, dtype=np.int64)
    for i, (info, reward_model) in enumerate(zip(extra, rm, strict=True)):
        row = {"extra_info": info, "reward_model": reward_model}
        keys[i] = rl_rows.row_index(row, f"{source} row {i}")
        levels[i] = rl_rows.class_level(row, schema_name)
    return keys, levels


def _columns(dataframe: Any) -> list[str]:
    return list(getattr(dataframe, "column_names", None) or getattr(dataframe, "keys", lambda: [])())


@register_trainer(TRAINER_MODE)
class TaoSR1SyncTrainer(PPOTrainerSync):
    """verl's sync trainer with difficulty-aware prompt selection in the train dataloader."""

    def _build_replay_buffer(self):
        # verl tests trainer_mode == "sync" literally in several places; this trainer IS the sync trainer.
        self.trainer_mode = "sync"
        return super()._build_replay_buffer()

    def _init_dataloader(self) -> None:
        from torchdata.stateful_dataloader import StatefulDataLoader
        from verl.utils.dataset.rl_dataset import collate_fn

        from taosr1_verl.sampling.torch_sampler import DifficultySampler

        rb = self.replay_buffer
        ours = isinstance(rb, DifficultySampling)
        if ours:
            # Refills are exact prompt counts: the loader must fetch in the buffer's granularity.
            with open_dict(self.config):
                self.config.data.gen_batch_size = rb.options.gen_batch_size
        super()._init_dataloader()
        # verl's own buffer: a tracker of our own (nothing feeds it) and the default options.
        tracker, rule, opts = (rb.tracker, rb.rule, rb.options) if ours else (DifficultyTracker(), GroupRule(),
                                                                              BufferOptions())
        files = self.config.data.train_files
        files = [str(f) for f in files] if not isinstance(files, str) else [files]
        keys, levels = dataset_keys_and_levels(self.train_dataset.dataframe, opts.schema,
                                               f"data.train_files {', '.join(files)}")
        policy_kw = dict(opts.policy or {})
        policy_kw.setdefault("seed", int(self.config.data.get("seed") or 0))
        group_size = opts.group_size or int(self.config.actor_rollout_ref.rollout.n)
        policy = SelectionPolicy(tracker, rule, PolicyConfig(group_size=group_size, **policy_kw),
                                 keys=keys, levels=levels)
        sampler = DifficultySampler(policy, num_samples=len(self.train_dataset),
                                    chunk_size=int(self.config.data.train_batch_size))
        gen_batch_size = self.config.data.get("gen_batch_size", None) or self.config.data.train_batch_size
        self.train_dataloader = StatefulDataLoader(
            dataset=self.train_dataset,
            batch_size=gen_batch_size,
            num_workers=self.config.data["dataloader_num_workers"],
            drop_last=True,
            collate_fn=collate_fn,
            sampler=sampler,
        )
        self.train_dataloader_it = None
        logger.info("taosr1_sync: difficulty sampler over %d prompts in %d classes (%s)",
                    len(keys), len(policy.class_levels), policy.class_levels)
