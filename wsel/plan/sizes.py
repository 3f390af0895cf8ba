"""A config.json student's sizes against its teacher's: what no selection can make is refused, in one line
that names the student, says where a derived size came from and how to fix it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from wsel.arch.families import COUNTS
from wsel.axes import AXIS_KINDS, kind_of
from wsel.errors import PlanError
from wsel.hfconfig import is_key
from wsel.selector import MEMBER_GROUPS, rope_head_dim

# how messages call a member and its group: (members, one member, one group)
_GROUP_WORDS = {
    "heads": ("query heads", "query head", "key/value head"),
    "experts": ("experts", "expert", "expert group"),
}


@dataclass(frozen=True)
class Sizes:
    """The axis sizes a config gives, and how the derived ones were computed (`hidden_size / ... = 288 / 3`)."""

    values: dict[str, int]
    derived: dict[str, str]


@dataclass(frozen=True)
class SizeCheck:
    teacher: Sizes
    student: Sizes
    keys: dict[str, str]  # axis → the config key users set for it
    where: str  # how messages name the student (its config, or the teacher's with --set)
    rotary_fraction: float | None  # the rotary share of head_dim (None: no RoPE)
    suggest: bool = True  # add fixes to refusals (off for the trial checks that look for a fix)

    def fail(self, problem: str) -> PlanError:
        return PlanError(f"{self.where}: {problem}")

    def name(self, axis: str) -> str:
        return f"{axis} ({self.keys[axis]})" if axis in self.keys else axis

    def run(self) -> list[str]:
        """Raise PlanError for a student no selection can make; return notes on legal but unusual ones."""
        rotary_fraction = self.rotary_fraction
        t, s = self.teacher.values, self.student.values
        for axis in sorted(set(t) & set(s)):
            self._axis(axis, t[axis], s[axis])
        for axis in sorted(set(t) ^ set(s)):
            self._one_sided(axis)
        for members, groups in MEMBER_GROUPS.items():
            if all(axis in sizes for axis in (members, groups) for sizes in (t, s)):
                self._groups(members, groups)
        if rotary_fraction is not None and s["head_dim"] != t["head_dim"]:
            try:
                rope_head_dim(t["head_dim"], s["head_dim"], rotary_fraction)
            except PlanError as e:
                problem = str(e)
                key = self.keys.get("head_dim", "head_dim")
                if key != "head_dim" and is_key(key):  # a key of another name: DeepSeek's qk_rope_head_dim
                    problem = problem.replace("head_dim", self.name("head_dim"), 1)
                raise self.fail(f"{problem}; e.g. {self._head_dim_fix()}" if self.suggest else problem) from None
        return self._notes()

    def _one_sided(self, axis: str) -> None:
        """An axis of tensors (not a count) that one config sizes and the other does not (DeepSeek's q_lora_rank,
        null in V2-Lite): the student would need tensors the teacher lacks, or lack ones its config implies."""
        if kind_of(axis) is None:
            return
        t, s, key = self.teacher.values, self.student.values, self.keys.get(axis, axis)
        if axis in s:
            raise self.fail(
                f"student {self.name(axis)} is {s[axis]} but the teacher has no {axis} (its {key} is absent or "
                f"null); a student cannot have what its teacher lacks: pass --set {key}=null, as the teacher's"
            )
        raise self.fail(
            f"student has no {axis} (its {key} is absent or null) but the teacher's is {t[axis]}; pass "
            f"--set {key}={t[axis]} or less"
        )

    def _groups(self, members: str, groups: str) -> None:
        """Members (query heads, experts) kept inside whole groups: each config's groups divide its members, and a
        student group holds no more members than a teacher group."""
        t, s = self.teacher.values, self.student.values
        for who, sizes in (("teacher", t), ("student", s)):
            if sizes[groups] == 0 or sizes[members] % sizes[groups]:
                raise self.fail(
                    f"{who} {self.name(members)} = {sizes[members]} is not a multiple of "
                    f"{self.name(groups)} = {sizes[groups]}"
                )
        group_t, group_s = t[members] // t[groups], s[members] // s[groups]
        if group_s > group_t:
            plural, member, group = _GROUP_WORDS[members]
            raise self.fail(
                f"student has {group_s} {plural} per {group} but the teacher has {group_t}; keep "
                f"{self.name(members)} / {self.name(groups)} at most {group_t} so every {member} keeps its {group}"
            )

    def _axis(self, axis: str, t: int, s: int) -> None:
        if AXIS_KINDS.get(axis, "width") == "equal" and s != t:
            fix = "--exclude the tensors that carry it" if axis == "classes" else f"keep it at {t}"
            raise self.fail(
                f"student {self.name(axis)} is {s} but the teacher's is {t}; this axis is never subsampled: {fix}"
            )
        if s > t and axis in COUNTS - {"layers"}:
            # routing to more experts (or groups) than the teacher did is legal (the planner bounds it); the student
            # is written without multi-token-prediction layers, whatever it says
            return
        if s > t:
            how = f", derived as {self.student.derived[axis]}," if axis in self.student.derived else ""
            raise self.fail(
                f"student {self.name(axis)} is {s}{how} but the teacher's is {t}; a student cannot be larger: "
                + self._fix(axis, t)
            )
        if s < 1 and axis in ("hidden", "heads", "kv_heads", "head_dim", "layers"):
            raise self.fail(f"student {self.name(axis)} is {s}; it must be at least 1")

    def _fix(self, axis: str, t: int) -> str:
        key = self.keys.get(axis, axis)
        if axis == "head_dim" and "head_dim" in self.student.derived:
            fixes = [f"--set {key}={t} (the teacher's)"] if is_key(key) else []
            heads = self._heads_that_work()
            if heads is not None:
                hidden = self.student.values["hidden"]
                fixes.append(f"--set {self.keys['heads']}={heads} ({self.keys['hidden']} / heads = {hidden // heads})")
            if fixes:
                return "pass " + ", or ".join(fixes)
        if not is_key(key):  # a size the config derives (hidden / heads): no key to set to it
            return f"choose sizes that make {key} at most {t}"
        return f"pass --set {key}={t} or less"

    def _head_dim_fix(self) -> str:
        """How to give the student the teacher's head_dim: set it, or (a family whose head_dim is always hidden /
        heads, such as GPT-NeoX) the head count that gives a working one."""
        t = self.teacher.values
        if is_key(self.keys["head_dim"]):
            return f"--set {self.keys['head_dim']}={t['head_dim']} (the teacher's)"
        heads = self._heads_that_work()
        if heads is None:
            return f"--set {self.keys['heads']} so that {self.keys['head_dim']} is one of them"
        return (
            f"--set {self.keys['heads']}={heads} ({self.keys['head_dim']} = {self.student.values['hidden'] // heads})"
        )

    def _heads_that_work(self) -> int | None:
        """The fewest query heads that make the derived head_dim a student every check accepts, if any."""
        s, t = self.student.values, self.teacher.values
        for heads in range(math.ceil(s["hidden"] / t["head_dim"]), t["heads"] + 1):
            if s["hidden"] % heads:
                continue
            values = s | {"heads": heads, "head_dim": s["hidden"] // heads, "v_head_dim": s["hidden"] // heads}
            if self.keys.get("kv_heads") == self.keys["heads"]:  # no GQA: one key/value head per query head
                values["kv_heads"] = heads
            try:
                SizeCheck(self.teacher, Sizes(values, {}), self.keys, self.where, self.rotary_fraction, False).run()
            except PlanError:
                continue
            return heads
        return None

    def _notes(self) -> list[str]:
        t, s = self.teacher.values, self.student.values
        width_t, width_s = t["heads"] * t["head_dim"], s["heads"] * s["head_dim"]
        if width_s > s["hidden"] and width_t <= t["hidden"]:
            return [
                f"student attention is {s['heads']} heads × {s['head_dim']} = {width_s} wide, wider than its "
                f"{self.keys['hidden']} {s['hidden']} (the teacher's is {width_t}, within its {t['hidden']}): "
                f"legal, but check it is meant ({self.keys['head_dim']} {s['head_dim']})"
            ]
        return []
