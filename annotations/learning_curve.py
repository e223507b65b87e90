"""How a label's held-out quality moved as labels were added, version by version."""

from __future__ import annotations

import dataclasses

from annotations.models import ClassifierLabel, EvaluationSource, TaskStatus


@dataclasses.dataclass(frozen=True)
class CurvePoint:
    """One trained version's output for the label: how many labeled windows it learned
    from (weak negatives apart) and what it scored on its held-out labels. Points
    measured on the held-out deployments share one evaluation set and compare exactly;
    time-block points each hold out other windows."""

    version: int
    labels: int
    roc_auc: float | None
    average_precision: float | None
    evaluated_on: str

    @property
    def comparable(self) -> bool:
        return self.evaluated_on == EvaluationSource.HELD_OUT_DEPLOYMENTS


def learning_curve(project_id: int, label_id: int, up_to_version: int | None = None) -> list[CurvePoint]:
    """The label's points over the project's trained versions (of any probe type), oldest first."""
    outputs = ClassifierLabel.objects.filter(
        classifier__project_id=project_id, classifier__status=TaskStatus.DONE, label_id=label_id
    ).select_related("classifier")
    if up_to_version is not None:
        outputs = outputs.filter(classifier__version__lte=up_to_version)
    return [
        CurvePoint(
            version=output.classifier.version,
            labels=output.train_positives + output.train_negatives,
            roc_auc=output.roc_auc,
            average_precision=output.average_precision,
            evaluated_on=output.evaluated_on,
        )
        for output in outputs.order_by("classifier__version")
    ]
