"""The command-line convention of every entry point (Hydra stops here, with experiment/command.py).

A problem the user can fix (`utils.errors.UserError`: a bad setting, a missing or wrong file, a
full disk, a stop on a signal) is printed as one line on stderr, `<tool>: <message>`, and the
process exits with the error's code (2, or 128 + the signal). Hydra's own composition errors (a
misspelt key, an unknown option of a config group, an override it cannot parse) are caught before
Hydra runs, by composing the command line's overrides once with Hydra's compose API, and are
reported the same way, naming the nearest valid keys or options. Anything else keeps its traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from .confdir import CONF_DIR
from .experiment.command import register_resolvers
from .utils.errors import UsageError, UserError, one_line


def fail(tool: str, error: UserError) -> None:
    """Prints `error` as one line on stderr and exits with its code."""
    print(f"{tool}: {one_line(error)}", file=sys.stderr, flush=True)
    sys.exit(error.exit_code)


@contextlib.contextmanager
def user_errors(tool: str) -> Iterator[None]:
    """Inside this block a UserError ends the process with one line on stderr (see `fail`).

    Inside one job of a Hydra multirun sweep the line is printed and the error raised on, so
    that Hydra marks that job failed and the sweep goes on with its other points.
    """
    try:
        yield
    except UserError as error:
        if _in_multirun():
            print(f"{tool}: {one_line(error)}", file=sys.stderr, flush=True)
            raise
        fail(tool, error)
    except KeyboardInterrupt:  # Ctrl-C outside training (which saves and stops on its own)
        print(f"{tool}: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)


def hydra_entry(tool: str, config_name: str, hydra_main: Callable[[], None], args: Sequence[str] | None = None) -> None:
    """Checks the command line's overrides (`args`, default sys.argv[1:]) against conf/<config_name>.yaml,
    then runs the @hydra.main function on them."""
    args = list(sys.argv[1:] if args is None else args)
    with user_errors(tool):
        check_overrides(config_name, args)
    sys.argv = sys.argv[:1] + args
    hydra_main()


def check_overrides(config_name: str, args: Sequence[str]) -> None:
    """Raises UsageError for an override Hydra would refuse, naming the key or option and the nearest valid ones.

    Sweeps (a,b,c and range()) are checked value by value for config groups and composed with
    their first value otherwise. Flags (-m, --cfg ...) are left to Hydra.
    """
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            flags = get_args_parser().parse_args(list(args))
    except SystemExit:  # argparse's usage text and "error: ..." went to `said`
        problem = said.getvalue().strip().splitlines()[-1].split("error: ", 1)[-1]
        raise UsageError(f"{problem}; `--help` lists the flags") from None
    if (
        flags.config_name
        or flags.config_path
        or flags.config_dir
        or flags.shell_completion
        or flags.experimental_rerun
        or flags.help
        or flags.hydra_help
    ):
        return  # another config, or not a run: Hydra answers these itself
    overrides = list(flags.overrides)
    if not overrides or GlobalHydra.instance().is_initialized():  # nothing to check, or called inside a Hydra app
        return
    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed.append(parser.parse_overrides([text])[0])
        except OverrideParseException:
            raise UsageError(
                f"cannot read the override {text!r}: write key=value (e.g. kimg=100), group=option (e.g. model=small) "
                "or a sweep a,b,c; quote values holding spaces or = (key='a b')"
            ) from None
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        first = []  # (override with a sweep reduced to its first value, parsed, whether it chooses a group option)
        for text, o in zip(overrides, parsed):
            values = _values(o)
            options = [] if o.is_delete() else loader.get_group_options(o.key_or_group)
            if options and not o.is_sweep_override() and not isinstance(o.value(), str):
                values = None  # group={key: value} merges into the group's node: Hydra checks it
            if options and values is not None:
                for value in values:
                    if value.strip("'\"") not in options:
                        raise UsageError(_unknown_option(o.key_or_group, value.strip("'\""), options))
            if o.is_sweep_override():
                if values is None:  # interval() and other sweeps that cannot be enumerated
                    continue
                text = f"{o.get_key_element()}={values[0]}"
            first.append((text, o, bool(options)))
        try:
            cfg = compose(config_name, overrides=[t for t, _, group in first if group], return_hydra_config=True)
        except (HydraException, OmegaConfBaseException) as error:
            raise UsageError(_hydra_message(error)) from None
        keys = _flat_keys(cfg)
        chosen = {o.key_or_group for _, o, group in first if group}
        for _, o, _ in first:
            key = o.key_or_group
            if o.is_add() or o.is_force_add() or key in chosen:
                continue
            if key not in keys and not any(k.startswith(key + ".") for k in keys):
                raise UsageError(_unknown_key(key, keys))
        try:
            compose(config_name, overrides=[t for t, _, _ in first], return_hydra_config=True)
        except (HydraException, OmegaConfBaseException) as error:
            raise UsageError(_hydra_message(error)) from None


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _values(o) -> list[str] | None:
    """The override's value(s) as Hydra strings: one for a plain override, each choice of a sweep; None if not enumerable."""
    if not o.is_sweep_override():
        return None if o.is_delete() else [o.get_value_element_as_str()]
    try:
        return list(o.sweep_string_iterator())
    except Exception:  # interval(): not a list of values
        return None


def _unknown_option(group: str, value: str, options: list[str]) -> str:
    if all(x.isdigit() for x in options) and value.strip().isdigit():
        ranked = sorted(options, key=lambda x: (abs(int(x) - int(value)), int(x)))[:2]
        listing = ", ".join(sorted(options, key=int))
    else:
        ranked = difflib.get_close_matches(value, options, n=2, cutoff=0.5)
        listing = ", ".join(options)
    nearest = f"; nearest: {' or '.join(ranked)}" if ranked else ""
    return f"{group}={value}: no such option (the options are {listing}){nearest}"


def _unknown_key(key: str, keys: set[str]) -> str:
    parent, _, leaf = key.rpartition(".")
    siblings = (
        sorted({k[len(parent) + 1 :].split(".")[0] for k in keys if k.startswith(parent + ".")})
        if parent
        else sorted(k for k in keys if "." not in k)
    )
    if not siblings:  # the parent itself is misspelt: compare whole keys
        near = difflib.get_close_matches(key, sorted(keys), n=2, cutoff=0.75)
        return f"{key}: no such setting" + (f"; did you mean {' or '.join(near)}?" if near else "")
    near = [f"{parent}.{n}" if parent else n for n in difflib.get_close_matches(leaf, siblings, n=2, cutoff=0.6)]
    if near:
        return f"{key}: no such setting; did you mean {' or '.join(near)}?"
    shown = ", ".join(siblings[:15]) + (", ..." if len(siblings) > 15 else "")
    return f"{key}: no such setting; {parent or 'the top level'} has: {shown}"


def _flat_keys(cfg, prefix: str = "") -> set[str]:
    """Every key of a composed config as a dotted path (values are not resolved)."""
    out: set[str] = set()
    items: Any = cfg.items_ex(resolve=False) if isinstance(cfg, DictConfig) else enumerate(cfg)
    for k, _ in items:
        path = f"{prefix}{k}"
        out.add(path)
        node = cfg._get_node(k)
        if (
            isinstance(node, (DictConfig, ListConfig))
            and not OmegaConf.is_missing(cfg, k)
            and not node._is_none()
            and not node._is_interpolation()
        ):
            out |= _flat_keys(node, path + ".")
    return out


def _hydra_message(error: Exception) -> str:
    """Hydra's message of a composition error without its hints and search-path listing, on one line."""
    lines = []
    for line in str(error).splitlines():
        if line.startswith(("Config search path", "\tprovider=", "Set the environment variable")):
            break
        if line.strip():
            lines.append(line.strip())
    cause = error.__cause__
    if cause is not None and str(cause).strip():
        lines.append(str(cause).strip().splitlines()[0])
    return "; ".join(lines)
