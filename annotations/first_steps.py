"""What an empty project needs next: add a deployment, give it audio, open a recording,
find similar windows. Each step names what it leads to, so a page can link to it."""

from __future__ import annotations

import dataclasses

from annotations.models import Deployment, Project, Recording, RecordingStatus, SearchRecord


@dataclasses.dataclass(frozen=True)
class FirstSteps:
    deployment: Deployment | None  # the first deployment: where audio goes
    has_audio: bool
    recording: Recording | None  # the first embedded recording: where to pick an example
    example_window_id: int | None  # its first window: what "Find similar" searches with
    searched: bool  # the user has searched this project

    @property
    def current(self) -> int:
        """The number (1-4) of the first step not done yet; 5 when all are."""
        done = (self.deployment is not None, self.has_audio, self.recording is not None, self.searched)
        return next((number for number, step_done in enumerate(done, start=1) if not step_done), 5)

    @property
    def done(self) -> bool:
        return self.current == 5


def first_steps(project: Project, user) -> FirstSteps:
    recordings = Recording.objects.filter(deployment__project=project)
    recording = recordings.filter(status=RecordingStatus.DONE).order_by("pk").first()
    example = recording.windows.order_by("start_s").values_list("pk", flat=True).first() if recording else None
    return FirstSteps(
        deployment=project.deployments.order_by("pk").first(),
        has_audio=recordings.exists(),
        recording=recording,
        example_window_id=example,
        searched=SearchRecord.objects.filter(project=project, user=user).exists(),
    )
