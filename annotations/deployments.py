"""Projects, deployments and their recordings: creating them, adding audio, progress."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import hashlib
import math
import re
import shutil
import zoneinfo
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from annotations.audio import AS_RECORDED, AudioFeed, Framing, sniff_format
from annotations.clips import delete_clips
from annotations.embedding_store import sync_window_start_times
from annotations.errors import InputError
from annotations.model_catalogue import configured_spec, hop_problem
from annotations.models import (
    Annotation,
    Classifier,
    Deployment,
    Detection,
    FolderGrant,
    LabelChange,
    Membership,
    Project,
    Recording,
    RecordingStatus,
    Role,
    StartTimeSource,
    Window,
)
from annotations.queueing import INGEST_RECORDING, enqueue_in_order_on_commit, enqueue_on_commit
from annotations.recording_time import EARLIEST, LATEST, plausible_start, recording_start
from annotations.search_index import delete_index, request_builds_for_zones, sync_index_start_times
from annotations.spectrograms import cache_folder
from annotations.vocabulary import add_label

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus"}


def create_project(user, name: str, description: str = "", labels: list[str] = ()) -> Project:
    with transaction.atomic():
        project = Project.objects.create(name=name, description=description, created_by=user)
        Membership.objects.create(project=project, user=user, role=Role.ADMIN)
        for label in labels:
            add_label(project, label)
    return project


def update_project(project: Project, **fields) -> Project:
    """Change any of a project's name, description and exclusive_labels."""
    for field, value in fields.items():
        setattr(project, field, value)
    project.save(update_fields=list(fields) or None)
    return project


LATITUDE_RANGE = (-90.0, 90.0)
LONGITUDE_RANGE = (-180.0, 180.0)
MAX_CHANNEL = 255
# Deployment fields a person describes; create_deployment and update_deployment take them.
METADATA_FIELDS = (
    "name",
    "site",
    "latitude",
    "longitude",
    "recorder",
    "timezone",
    "deployed_on",
    "retrieved_on",
    "channel",
    "hop_s",
    "speed_factor",
    "low_hz",
    "high_hz",
)
# Time expansion from a tenth of a hundred (bats at 384 kHz into a 32 kHz model: 1/12) to
# ten times faster (infrasound).
SPEED_RANGE = (0.01, 10.0)


@functools.cache
def time_zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def metadata_problems(deployment: Deployment) -> list[str]:
    """What is wrong with a deployment's metadata, in words a person can act on."""
    problems = []
    if not deployment.name.strip():
        problems.append("name is empty")
    for field in ("name", "site", "recorder"):
        if len(getattr(deployment, field)) > 200:
            problems.append(f"{field} is longer than 200 characters")
    for field, (low, high) in (("latitude", LATITUDE_RANGE), ("longitude", LONGITUDE_RANGE)):
        value = getattr(deployment, field)
        if value is not None and not (math.isfinite(value) and low <= value <= high):
            problems.append(f"{field} {value:g} is out of range ({low:g} to {high:g})")
    if deployment.timezone not in time_zone_names():
        problems.append(
            f"timezone {deployment.timezone!r} is not an IANA time zone name such as 'Europe/Berlin' or 'UTC'"
        )
    if deployment.deployed_on and deployment.retrieved_on and deployment.retrieved_on < deployment.deployed_on:
        problems.append(f"retrieved_on {deployment.retrieved_on} is before deployed_on {deployment.deployed_on}")
    if deployment.channel is not None and not 0 <= deployment.channel <= MAX_CHANNEL:
        problems.append(f"channel {deployment.channel} is out of range (0 to {MAX_CHANNEL}, or empty for the mix)")
    spec = configured_spec()
    hop_checked = deployment.hop_s is not None and spec is not None
    if hop_checked and (problem := hop_problem(deployment.hop_s, spec.window_s, spec.sample_rate)):
        problems.append(problem)
    return problems + _feed_problems(deployment, spec.sample_rate if spec else None)


def _feed_problems(deployment: Deployment, model_rate: int | None) -> list[str]:
    """What is wrong with a deployment's speed and band, in words a person can act on."""
    speed, low, high = deployment.speed_factor, deployment.low_hz, deployment.high_hz
    low_speed, high_speed = SPEED_RANGE
    if not (math.isfinite(speed) and low_speed <= speed <= high_speed):
        return [
            f"speed_factor {speed:g} is out of range ({low_speed:g} to {high_speed:g}; e.g. 0.1 plays bats recorded "
            "at 256-384 kHz ten times slower, into the model's band)"
        ]
    if (low is None) != (high is None):
        return ["a band needs both low_hz and high_hz (or neither, for all of the audio)"]
    if low is None:
        return []
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high):
        return [f"the band {low:g}-{high:g} Hz must run from a low_hz >= 0 up to a higher high_hz"]
    if model_rate and low * speed >= model_rate / 2:
        return [
            f"the band starts at {low:g} Hz, above the {model_rate / 2 / speed:g} Hz that the model hears at "
            f"speed {speed:g}: slow the audio down more (a smaller speed_factor)"
        ]
    return []


def deployment_feed(deployment: Deployment) -> AudioFeed:
    """How a deployment's files reach the model: its channel, speed and band."""
    band = None if deployment.low_hz is None else (deployment.low_hz, deployment.high_hz)
    return AudioFeed(deployment.channel, deployment.speed_factor, band)


def clip_feed(project: Project) -> AudioFeed:
    """How an uploaded example clip reaches the model: at the speed and band of the
    project's deployments where they all share one (a bat project's clip is slowed as its
    recordings are), else as it is. Every channel is mixed: a clip has no deployment."""
    feeds = {dataclasses.replace(deployment_feed(deployment), channel=None) for deployment in project.deployments.all()}
    return feeds.pop() if len(feeds) == 1 else AS_RECORDED


def _check_metadata(deployment: Deployment) -> None:
    if problems := metadata_problems(deployment):
        raise InputError("; ".join(problems))


def create_deployment(project: Project, name: str, server_folder: str = "", **metadata) -> Deployment:
    """Create a deployment; with ``server_folder``, register the audio files found there.

    ``metadata``: any of METADATA_FIELDS besides the name, and ``held_out``.
    """
    deployment = Deployment(project=project, name=name, **metadata)
    _check_metadata(deployment)
    folder = granted_folder(project, server_folder) if server_folder else None
    with transaction.atomic():
        deployment.server_folder = str(folder or "")
        deployment.save()
        if folder and not (scan := register_folder_files(deployment, folder)).recordings:
            raise InputError(_no_audio(server_folder, scan))
    return deployment


def move_server_folder(deployment: Deployment, server_folder: str) -> FolderScan:
    """Point a deployment at its folder's new place (a disk mounted elsewhere, a folder
    moved): its recordings are found again there by content; new files are added."""
    if not server_folder:
        raise InputError("a deployment that reads a server folder keeps one; give its new place")
    folder = granted_folder(deployment.project, server_folder)
    with transaction.atomic():
        deployment.server_folder = str(folder)
        deployment.save(update_fields=["server_folder"])
        return register_folder_files(deployment, folder)


def start_time_problems(deployment: Deployment, now: dt.datetime | None = None) -> list[str]:
    """Doubts about a deployment's start times, in words a person can act on: a recorder
    whose clock was never set (AudioMoths then write 1970), starts in the future or outside
    the deployment's dates, and file-name times read as UTC because no time zone was given."""
    now = now or timezone.now()
    starts = deployment.recordings.exclude(started_at=None)
    problems = []
    if (future := starts.filter(started_at__gt=now).count()) > 0:
        problems.append(f"{future} recording(s) start in the future: is the recorder's clock right?")
    if (unset := starts.filter(started_at__year__lt=2000).count()) > 0:
        problems.append(f"{unset} recording(s) start before 2000: the recorder's clock was probably never set")
    zone = zoneinfo.ZoneInfo(deployment.timezone)
    earliest, latest = deployment.deployed_on, deployment.retrieved_on
    outside = starts.filter(started_at__year__gte=2000, started_at__lte=now)
    if earliest:
        before = outside.filter(started_at__lt=dt.datetime.combine(earliest, dt.time(), zone)).count()
        if before:
            problems.append(f"{before} recording(s) start before the deployment date {earliest}")
    if latest:
        after = outside.filter(started_at__gte=dt.datetime.combine(latest + dt.timedelta(days=1), dt.time(), zone))
        if count := after.count():
            problems.append(f"{count} recording(s) start after the retrieval date {latest}")
    from_names = deployment.recordings.filter(started_at_source=StartTimeSource.FILENAME)
    if deployment.timezone == "UTC" and from_names.exists():
        problems.append(
            "start times from file names are read as UTC, since the deployment names no time zone: right for "
            "recorders set to UTC (AudioMoth's default); if this one kept local time, set the site's time zone"
        )
    return problems


def update_deployment(deployment: Deployment, **metadata) -> Deployment:
    """Change a deployment's metadata (any of METADATA_FIELDS) or whether it is held out
    for evaluation; its server folder stays."""
    spec = configured_spec()
    default_hop = spec.hop_s if spec else None
    embedded = deployment.recordings.filter(windows_done__gt=0).count()
    if embedded and "hop_s" in metadata and (metadata["hop_s"] or default_hop) != hop_of(deployment):
        raise InputError(
            f"{embedded} recordings are embedded at a hop of {hop_of(deployment):g} s already: "
            "to cut them at another hop, embed the deployment again (Re-embed, on its page)"
        )
    changed = [field for field in ("speed_factor", "low_hz", "high_hz") if field in metadata]
    if embedded and any(metadata[field] != getattr(deployment, field) for field in changed):
        raise InputError(
            f"{embedded} recordings are embedded at speed {deployment.speed_factor:g}"
            f"{_band_words(deployment)} already, and their windows, labels and detections are in that time: "
            "add the files as a new deployment to embed them at another speed or band"
        )
    zone = deployment.timezone
    for field, value in metadata.items():
        setattr(deployment, field, value)
    _check_metadata(deployment)
    deployment.save()
    if deployment.timezone != zone:
        request_builds_for_zones(deployment.project)  # its windows' local times of day moved
    return deployment


@dataclasses.dataclass(frozen=True)
class ReembedPlan:
    """What embedding a deployment again at ``hop_s`` would do, before it is done."""

    hop_s: float
    recordings: int
    windows_now: int
    windows_after: int  # from the recordings' durations
    labels: int  # labels on its windows: they move onto the new windows their spans cover
    detections: int  # of runs over it: removed with the old windows (run again)

    @property
    def told(self) -> str:
        return (
            f"Embedding {self.recordings} recordings again with windows every {self.hop_s:g} s replaces their "
            f"{self.windows_now:,} windows with about {self.windows_after:,}. The {self.labels:,} labels on them "
            "stay on their spans of time: each moves onto the new windows it covers at least half of (two "
            "labels that disagree over one new window leave it unlabeled). "
            + (
                f"The {self.detections:,} detections of runs over this deployment go with the old windows: run "
                "the classifiers again. "
                if self.detections
                else ""
            )
            + "The history of labels on the old windows, and older classifier versions' record of the windows "
            "they trained on, go with the old windows. Search and queues see the new windows as each "
            "recording is done."
        )


def _framing_at(hop_s: float) -> Framing:
    """The configured model's windows every ``hop_s`` seconds; refuses a hop it cannot take."""
    spec = configured_spec()
    if spec is None:
        raise InputError("the configured embedding model is unknown: its windows cannot be planned")
    if problem := hop_problem(hop_s, spec.window_s, spec.sample_rate):
        raise InputError(problem)
    return Framing.from_seconds(spec.sample_rate, spec.window_s, hop_s)


def reembed_plan(deployment: Deployment, hop_s: float) -> ReembedPlan:
    framing = _framing_at(hop_s)
    recordings = deployment.recordings.filter(status=RecordingStatus.DONE)
    durations = recordings.values_list("duration_s", flat=True)
    windows = Window.objects.filter(deployment_id=deployment.pk)
    return ReembedPlan(
        hop_s=hop_s,
        recordings=recordings.count(),
        windows_now=windows.count(),
        windows_after=sum(framing.window_count(round((d or 0) * framing.sample_rate)) for d in durations),
        labels=Annotation.objects.filter(window__deployment_id=deployment.pk).count(),
        detections=Detection.objects.filter(run__deployment=deployment).count(),
    )


def reembed(deployment: Deployment, hop_s: float) -> int:
    """Embed every recording of the deployment again with windows every ``hop_s``
    seconds (``reembed_plan`` says what that does); returns how many were queued."""
    _framing_at(hop_s)  # refuses a hop the model cannot take
    with transaction.atomic():
        Deployment.objects.filter(pk=deployment.pk).update(hop_s=hop_s)
        deployment.hop_s = hop_s
        deployment.recordings.filter(status=RecordingStatus.DONE).update(status=RecordingStatus.QUEUED)
        return queue_ingest(deployment)


def window_in_file(deployment: Deployment) -> float | None:
    """How much of a recording one of the configured model's windows holds: its length
    times the deployment's speed (0.3 s for BirdNET's 3 s at 0.1)."""
    spec = configured_spec()
    return spec.window_s * deployment.speed_factor if spec else None


def _band_words(deployment: Deployment) -> str:
    return "" if deployment.low_hz is None else f" in the band {deployment.low_hz:g}-{deployment.high_hz:g} Hz"


def hop_of(deployment: Deployment) -> float:
    """The hop a deployment's windows are cut at: its own, else the configured model's."""
    if deployment.hop_s is not None:
        return deployment.hop_s
    spec = configured_spec()
    return spec.hop_s if spec else 0.0


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _no_audio(folder: str, scan: FolderScan | None = None) -> str:
    """One answer for a missing and an empty folder: neither tells what exists on the server."""
    found = f": {scan.summary()}" if scan and (scan.known or scan.moved or scan.skipped) else ""
    return f"no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) under {folder}{found}"


def grantable_folder(folder: str) -> Path:
    """``folder`` resolved, if it is a folder inside the server's audio roots (for staff)."""
    resolved = Path(folder).resolve()  # follows symlinks, so a link cannot escape
    if not any(_within(resolved, root) for root in settings.PERCH_AGILE_AUDIO_ROOTS):
        roots = ", ".join(str(root) for root in settings.PERCH_AGILE_AUDIO_ROOTS)
        raise InputError(f"{folder} is outside the audio roots of this server ({roots}: PERCH_AGILE_AUDIO_ROOTS)")
    if not resolved.is_dir():
        raise InputError(f"{folder} is not a folder on the server")
    return resolved


def grant_folder(project: Project, folder: str, granted_by=None) -> FolderGrant:
    """Let ``project`` register deployments from ``folder`` and below: a site-staff decision."""
    grant, _ = FolderGrant.objects.get_or_create(
        project=project, folder=str(grantable_folder(folder)), defaults={"granted_by": granted_by}
    )
    return grant


def granted_folder(project: Project, folder: str) -> Path:
    """Resolve a server folder a project admin names (absolute, or relative to an audio root
    as pages show it), and check that it lies inside a folder granted to the project (and
    still inside the audio roots). The refusal names neither the roots nor the grants of
    other projects, and a missing folder reads like an empty one."""
    roots = settings.PERCH_AGILE_AUDIO_ROOTS
    grants = [Path(grant.folder) for grant in project.folder_grants.all()]
    named = Path(folder)
    for resolved in (named.resolve(),) if named.is_absolute() else ((root / named).resolve() for root in roots):
        if any(_within(resolved, root) for root in roots) and any(_within(resolved, grant) for grant in grants):
            break
    else:
        raise InputError(
            f"{folder} is not in a server folder granted to this project; site staff grant folders "
            "(Django admin, Folder grants), and the project's settings list the ones it has"
        )
    if not resolved.is_dir():
        raise InputError(_no_audio(folder))
    return resolved


def folder_under_root(folder: str) -> str:
    """A server folder as members may see it: relative to the audio root that holds it
    ("." for the root itself), so that no page or API answer shows the server's layout."""
    path = Path(folder)
    for root in settings.PERCH_AGILE_AUDIO_ROOTS:
        if path == root or root in path.parents:
            return str(path.relative_to(root))
    return path.name


@dataclasses.dataclass(frozen=True)
class FolderScan:
    """What a look through a server folder found: the new recordings, and how many files
    were passed over for each reason (so that "0 files" never comes without a why)."""

    recordings: list[Recording]
    known: int
    moved: int  # registered recordings found again at another path (same content)
    skipped: dict[str, int]

    def summary(self) -> str:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.skipped.items()))
        return f"{len(self.recordings)} new audio file(s), {self.known} already registered, {self.moved} moved" + (
            f"; passed over: {reasons}" if reasons else ""
        )


FINGERPRINT_BYTES = 64 * 1024


def file_fingerprint(path: Path) -> str:
    """SHA-256 of a file's size, first and last 64 KiB: cheap on multi-GB files, and
    recorder files of equal size still differ in their header's time and in their audio."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(size.to_bytes(8, "little"))
    with open(path, "rb") as f:
        digest.update(f.read(FINGERPRINT_BYTES))
        f.seek(max(0, size - FINGERPRINT_BYTES))
        digest.update(f.read(FINGERPRINT_BYTES))
    return digest.hexdigest()


def register_folder_files(deployment: Deployment, folder: Path) -> FolderScan:
    """Add every audio file under ``folder`` (recursively) that is not yet registered.

    A file whose content is that of a recording whose own path is gone (or lies outside
    ``folder``) is that recording moved: its path is updated, and its windows and labels
    stay with it.
    """
    recordings = list(deployment.recordings.only("id", "path", "fingerprint"))
    known = {r.path for r in recordings}
    lost = {
        r.fingerprint: r
        for r in recordings
        if r.fingerprint and (folder not in Path(r.path).parents or not Path(r.path).exists())
    }
    new, already, moved, skipped = [], 0, 0, collections.Counter()
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            skipped[f"not audio by name ({path.suffix.lower() or 'no extension'})"] += 1
        elif folder not in path.resolve().parents:  # a symlink inside must not lead outside
            skipped["links leading outside the folder"] += 1
        elif str(path) in known:
            already += 1
        elif (found := lost.pop(fingerprint := file_fingerprint(path), None)) is not None:
            Recording.objects.filter(pk=found.pk).update(path=str(path), filename=str(path.relative_to(folder)))
            moved += 1
        else:
            new.append(new_recording(deployment, path, str(path.relative_to(folder)), path.name, fingerprint))
    return FolderScan(Recording.objects.bulk_create(new), already, moved, dict(skipped))


def new_recording(
    deployment: Deployment, path: Path, filename: str, original_name: str, fingerprint: str = ""
) -> Recording:
    """An unsaved recording of the audio file at ``path``, with its start time (see
    ``recording_time.recording_start``). The first recorder serial a file states becomes
    the deployment's recorder where it names none."""
    start = recording_start(path, original_name, zoneinfo.ZoneInfo(deployment.timezone))
    if start.recorder and not deployment.recorder:
        deployment.recorder = start.recorder
        Deployment.objects.filter(pk=deployment.pk, recorder="").update(recorder=start.recorder)
    return Recording(
        deployment=deployment,
        path=str(path),
        filename=filename,
        size_bytes=path.stat().st_size,
        fingerprint=fingerprint or file_fingerprint(path),
        started_at=start.started_at,
        started_at_source=start.source,
    )


def edit_start_time(recording: Recording, started_at: dt.datetime | None) -> Recording:
    """Set a recording's start time by hand (None: unknown)."""
    if started_at and not plausible_start(started_at):
        raise InputError(f"a start time must lie between {EARLIEST.year} and {LATEST.year}")
    recording.started_at = started_at
    recording.started_at_source = StartTimeSource.EDITED if started_at else StartTimeSource.UNKNOWN
    # Not save(): updated_at measures ingest throughput (deployment_progress).
    with transaction.atomic():
        Recording.objects.filter(pk=recording.pk).update(
            started_at=recording.started_at, started_at_source=recording.started_at_source
        )
        sync_window_start_times(recording)
        sync_index_start_times(recording)
    return recording


def safe_filename(name: str) -> str:
    """A file name that cannot climb out of its folder or confuse a shell."""
    base = Path(name.replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "audio"
    return cleaned[:200]


@dataclasses.dataclass(frozen=True)
class UploadResult:
    recordings: list[Recording]
    rejected: list[tuple[str, str]]  # (file name, reason)


SNIFF_BYTES = 16  # enough for annotations.audio.sniff_format to recognise every format


def name_and_size_rejection(name: str, size: int) -> str:
    """Why a file of this name and size cannot become a recording, or "" when it may.

    Checked before any byte is stored, so a browser learns at once what will be refused.
    """
    if Path(name).suffix.lower() not in AUDIO_EXTENSIONS:
        return f"unsupported file type; expected one of {', '.join(sorted(AUDIO_EXTENSIONS))}"
    if size > settings.PERCH_AGILE_MAX_UPLOAD_BYTES:
        return f"{size / 1e9:.1f} GB is over the limit of {settings.PERCH_AGILE_MAX_UPLOAD_BYTES / 1e9:.1f} GB per file"
    if size == 0:
        return "the file is empty (0 bytes)"
    return ""


def content_rejection(head: bytes) -> str:
    """Why a file whose first bytes are ``head`` is not audio, or "" when it may be.

    The content decides, not the name: the first bytes must announce an audio format.
    """
    if sniff_format(head) is None:
        return "the content is not WAV, FLAC, OGG or MP3 audio, whatever its name says"
    return ""


def upload_rejection(upload: UploadedFile) -> str:
    """Why an uploaded file cannot be a recording, or "" when it may be one."""
    if reason := name_and_size_rejection(upload.name, upload.size):
        return reason
    upload.seek(0)
    head = upload.read(SNIFF_BYTES)
    upload.seek(0)
    return content_rejection(head)


def duplicate_rejection(deployment: Deployment, fingerprint: str) -> str:
    """Why a file of this content is not stored again ("" if the deployment has none like it):
    its windows would come back twice in every search."""
    same = deployment.recordings.filter(fingerprint=fingerprint).only("filename").first()
    if same is None:
        return ""
    return (
        f"this deployment already holds the same audio as {same.filename} (choose “keep duplicates” to store it again)"
    )


def add_uploaded_files(
    deployment: Deployment, files: list[UploadedFile], keep_duplicates: bool = False
) -> UploadResult:
    """Store the uploads that are audio under MEDIA_ROOT (streamed in chunks) and register
    them as recordings; the others, and copies of audio the deployment holds unless
    ``keep_duplicates``, are reported with their reason."""
    if not files:
        raise InputError("No files were sent: use the multipart field 'files'.")
    recordings, rejected = [], []
    for upload in files:
        if reason := upload_rejection(upload):
            rejected.append((upload.name, reason))
            continue
        target = claim_upload_path(deployment, upload.name)
        with open(target, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        fingerprint = file_fingerprint(target)
        if not keep_duplicates and (reason := duplicate_rejection(deployment, fingerprint)):
            target.unlink()
            rejected.append((upload.name, reason))
            continue
        recordings.append(register_upload(deployment, target, upload.name, fingerprint))
    return UploadResult(recordings, rejected)


def upload_folder(deployment_id: int) -> Path:
    """Where the app keeps a deployment's uploaded audio, partial uploads included: one
    folder, so that deleting the deployment deletes all of it."""
    return Path(settings.MEDIA_ROOT) / "deployments" / str(deployment_id)


def claim_upload_path(deployment: Deployment, name: str) -> Path:
    """Create an empty file under a free, sanitised version of ``name`` in the deployment's
    upload folder and return its path. Created exclusively (O_EXCL), so two uploads of the
    same name at the same moment cannot overwrite each other."""
    folder = upload_folder(deployment.pk)
    folder.mkdir(parents=True, exist_ok=True)
    safe = Path(safe_filename(name))
    target, counter = folder / safe.name, 0
    while True:
        try:
            target.touch(exist_ok=False)
            return target
        except FileExistsError:
            counter += 1
            target = folder / f"{safe.stem}-{counter}{safe.suffix}"


def register_upload(deployment: Deployment, stored: Path, original_name: str, fingerprint: str = "") -> Recording:
    """Register a file the app stored as a recording. The start time comes from the name the
    uploader gave (sanitising may have mangled it, e.g. a "+1000" UTC offset)."""
    recording = new_recording(deployment, stored, stored.name, original_name, fingerprint)
    recording.save()
    return recording


def queue_ingest(deployment: Deployment, then: tuple[str, int] | None = None) -> int:
    """Queue every recording that is not done; returns how many were queued. A server
    folder is looked through again first: files a recorder added since are registered.
    ``then`` (a task name and its argument) runs once every recording is embedded: the
    recordings are then embedded one after another, in one chain of tasks."""
    if deployment.server_folder and Path(deployment.server_folder).is_dir():
        register_folder_files(deployment, Path(deployment.server_folder))
    pending = list(deployment.recordings.exclude(status=RecordingStatus.DONE).values_list("pk", flat=True))
    Recording.objects.filter(pk__in=pending).update(status=RecordingStatus.QUEUED, error="")
    if pending:
        Deployment.objects.filter(pk=deployment.pk).update(ingest_started_at=timezone.now())
    if then is not None:
        enqueue_in_order_on_commit([(INGEST_RECORDING, recording_id) for recording_id in pending] + [then])
        return len(pending)
    for recording_id in pending:
        # Unsent recordings stay queued in the database; ingesting again sends them.
        enqueue_on_commit(INGEST_RECORDING, recording_id)
    return len(pending)


FINISHED = [RecordingStatus.DONE, RecordingStatus.FAILED]
UNFINISHED = [RecordingStatus.QUEUED, RecordingStatus.EMBEDDING]  # a worker has yet to finish these


@dataclasses.dataclass(frozen=True)
class DeploymentProgress:
    files_total: int
    files_queued: int
    files_embedding: int
    files_done: int
    files_failed: int
    audio_hours_done: float
    windows: int
    windows_in_progress: int
    windows_expected_in_progress: int
    # Since the latest ingest was queued: windows embedded per second, and the seconds
    # left at that pace (estimated from the bytes still to do); None until measurable.
    windows_per_s: float | None = None
    eta_s: float | None = None

    @property
    def fraction_done(self) -> float:
        finished = self.files_done + self.files_failed
        if not self.files_total:
            return 0.0
        partial = (
            self.windows_in_progress / self.windows_expected_in_progress if self.windows_expected_in_progress else 0
        )
        return min(1.0, (finished + partial * self.files_embedding) / self.files_total)


def deployment_progress(deployment: Deployment) -> DeploymentProgress:
    since = deployment.ingest_started_at or timezone.now()
    counts = deployment.recordings.aggregate(
        total=Count("id"),
        bytes_pending=Sum("size_bytes", filter=Q(status__in=UNFINISHED)),
        bytes_finished=Sum("size_bytes", filter=Q(updated_at__gte=since, status__in=FINISHED)),
        windows_finished=Sum("windows_done", filter=Q(updated_at__gte=since, status=RecordingStatus.DONE)),
        queued=Count("id", filter=Q(status=RecordingStatus.QUEUED)),
        embedding=Count("id", filter=Q(status=RecordingStatus.EMBEDDING)),
        done=Count("id", filter=Q(status=RecordingStatus.DONE)),
        failed=Count("id", filter=Q(status=RecordingStatus.FAILED)),
        seconds=Sum("duration_s", filter=Q(status=RecordingStatus.DONE)),
        in_progress=Sum("windows_done", filter=Q(status=RecordingStatus.EMBEDDING)),
        # Counted on the recordings (replace_windows keeps them), not over a million windows.
        windows=Sum("windows_done", filter=Q(status=RecordingStatus.DONE)),
        expected=Sum("windows_expected", filter=Q(status=RecordingStatus.EMBEDDING)),
        last_finished=Max("updated_at", filter=Q(updated_at__gte=since, status__in=FINISHED)),
    )
    # The pace is of the work: once nothing is queued or embedding, the clock stops at the last file.
    idle = not (counts["queued"] or counts["embedding"]) and counts["last_finished"] is not None
    elapsed = ((counts["last_finished"] if idle else timezone.now()) - since).total_seconds()
    windows_since = (counts["windows_finished"] or 0) + (counts["in_progress"] or 0)
    windows_per_s = windows_since / elapsed if elapsed > 0 and windows_since else None
    bytes_finished = counts["bytes_finished"] or 0
    eta_s = (counts["bytes_pending"] or 0) / (bytes_finished / elapsed) if bytes_finished and elapsed > 0 else None
    return DeploymentProgress(
        windows_per_s=windows_per_s,
        eta_s=eta_s,
        files_total=counts["total"],
        files_queued=counts["queued"],
        files_embedding=counts["embedding"],
        files_done=counts["done"],
        files_failed=counts["failed"],
        audio_hours_done=(counts["seconds"] or 0.0) / 3600,
        windows=counts["windows"] or 0,
        windows_in_progress=counts["in_progress"] or 0,
        windows_expected_in_progress=counts["expected"] or 0,
    )


@dataclasses.dataclass(frozen=True)
class DeletionSummary:
    """What deleting a project or deployment takes with it; said before anything is deleted."""

    name: str
    deployments: int
    recordings: int
    audio_hours: float
    windows: int
    annotations: int
    classifiers: int
    detections: int
    uploaded_files: int  # files the app stored; files in server folders are never deleted


def deletion_summary(target: Project | Deployment) -> DeletionSummary:
    if isinstance(target, Project):
        deployments = target.deployments.all()
        classifiers = Classifier.objects.filter(project=target).count()
    else:
        deployments = Deployment.objects.filter(pk=target.pk)
        classifiers = 0
    recordings = Recording.objects.filter(deployment__in=deployments)
    return DeletionSummary(
        name=target.name,
        deployments=deployments.count(),
        recordings=recordings.count(),
        audio_hours=(recordings.aggregate(s=Sum("duration_s"))["s"] or 0.0) / 3600,
        windows=Window.objects.filter(recording__in=recordings).count(),
        annotations=Annotation.objects.filter(window__recording__in=recordings).count(),
        classifiers=classifiers,
        detections=Detection.objects.filter(window__recording__in=recordings).count(),
        uploaded_files=recordings.filter(deployment__server_folder="").count(),
    )


def delete_with_confirmation(target: Project | Deployment, confirm_name: str) -> DeletionSummary:
    """Delete a project or deployment, with its uploaded audio, once ``confirm_name``
    repeats its name exactly."""
    summary = deletion_summary(target)
    if confirm_name != target.name:
        raise InputError(
            f"to delete {target.name!r}, repeat its name exactly as confirmation; this deletes "
            f"{summary.recordings} recordings ({summary.audio_hours:.1f} h), {summary.windows} windows, "
            f"{summary.annotations} labels, {summary.classifiers} classifiers and {summary.detections} detections"
        )
    deployment_ids = (
        [target.pk] if isinstance(target, Deployment) else list(target.deployments.values_list("pk", flat=True))
    )
    with transaction.atomic():
        _delete_windows(deployment_ids)
        if isinstance(target, Project):
            for index in target.search_indexes.all():
                delete_index(index)
            delete_clips(target.clip_queries.all())  # with their files
            exchanges = [("imports", pk) for pk in target.hoplite_imports.values_list("pk", flat=True)] + [
                ("exports", pk) for pk in target.hoplite_exports.values_list("pk", flat=True)
            ]
            transaction.on_commit(
                lambda: [shutil.rmtree(hoplite_folder(*exchange), ignore_errors=True) for exchange in exchanges]
            )
        target.delete()
        transaction.on_commit(lambda: _delete_uploads(deployment_ids))
    return summary


def _delete_windows(deployment_ids: list[int]) -> None:
    """Delete windows and what hangs on them in bulk: the ORM's cascade would first load
    every window (embedding included) into memory."""
    window_ids = (
        "SELECT w.id FROM annotations_window w JOIN annotations_recording r ON r.id = w.recording_id "
        "WHERE r.deployment_id = ANY(%s)"
    )
    with connection.cursor() as cursor:
        for model in (Detection, LabelChange, Annotation, Window):
            column = "id" if model is Window else "window_id"
            cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE {column} IN ({window_ids})", [deployment_ids])


def hoplite_folder(kind: str, exchange_id: int) -> Path:
    """Where a hoplite import ("imports") or export ("exports") keeps its files."""
    return Path(settings.MEDIA_ROOT) / "hoplite" / kind / str(exchange_id)


def _delete_uploads(deployment_ids: list[int]) -> None:
    for deployment_id in deployment_ids:
        shutil.rmtree(upload_folder(deployment_id), ignore_errors=True)
        shutil.rmtree(cache_folder(deployment_id), ignore_errors=True)
