"""scikit-learn's hyperparameter protocol for a class whose ``__init__`` keywords are
its hyperparameters, each stored as given under its own name."""
from __future__ import annotations

import inspect

from npcf.utils.files import as_written


class Params:
    """Mixin: ``get_params``/``set_params`` and ``__sklearn_tags__`` as in scikit-learn
    and a ``repr`` naming the hyperparameters that differ from their defaults. A class checks its values in
    ``_check_params()`` (raising ValueError, e.g. :class:`~npcf.errors.ParamError`)."""

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def _check_params(self) -> None:
        """ValueError naming the first hyperparameter out of its domain (none here)."""

    def get_params(self, deep: bool = True) -> dict:
        """Hyperparameters by name, exactly as given."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params):
        """Set hyperparameters by name; returns self. All or nothing: a name or value
        that is refused (ValueError / ParamError) leaves every hyperparameter as it was."""
        valid = set(self._param_names())
        for k in params:
            if k not in valid:
                raise ValueError(f"invalid parameter {k!r} for {type(self).__name__}; valid: "
                                 f"{', '.join(sorted(valid))}")
        before = {k: getattr(self, k) for k in params}
        for k, v in params.items():
            setattr(self, k, v)
        try:
            self._check_params()
        except ValueError:
            for k, v in before.items():
                setattr(self, k, v)
            raise
        return self

    def __sklearn_tags__(self):
        """scikit-learn's tags (its utilities ask every estimator for them): sparse 2-D
        input, no target, non-negative ratings not required. Imports scikit-learn, so
        only scikit-learn itself calls this."""
        from sklearn.utils import InputTags, Tags, TargetTags
        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    input_tags=InputTags(sparse=True))

    def changed_params(self) -> dict:
        """The hyperparameters whose value differs from their default, by name."""
        defaults = inspect.signature(type(self).__init__).parameters
        return {k: v for k, v in self.get_params().items()
                if as_written(v) != as_written(defaults[k].default)}

    def __repr__(self) -> str:
        changed = self.changed_params()
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"
