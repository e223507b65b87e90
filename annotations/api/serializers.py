"""Shapes of the API's input and output. They translate; the domain modules decide."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotations.deployments import (
    LATITUDE_RANGE,
    LONGITUDE_RANGE,
    MAX_CHANNEL,
    METADATA_FIELDS,
    folder_under_root,
)
from annotations.errors import InputError
from annotations.membership import INVITATION_LINK_DAYS, MAX_INVITATION_LINK_DAYS
from annotations.models import (
    Annotation,
    ClassifierLabel,
    ClipQuery,
    Combine,
    Deployment,
    EmbeddingMap,
    EmbeddingModel,
    HopliteExport,
    HopliteImport,
    ImportMode,
    InferenceRun,
    Invitation,
    InvitationLink,
    Label,
    LabelChange,
    LabeledFilter,
    LabelImport,
    LabelValue,
    Membership,
    ProbeType,
    Project,
    Recording,
    Role,
    TaskStatus,
)
from annotations.scoring import held_out_interval
from annotations.search import SearchFilters, SearchPath, SearchSpec
from annotations.search.filters import clock, sun_event, time_of_day
from annotations.stored_scores import windows_above
from annotations.sun import DEFAULT_SUN_FROM_MIN, DEFAULT_SUN_TO_MIN, SUN_EVENTS, SUN_OFFSET_MAX_MIN
from perch_agile.params import MAX_ID

# Largest id PostgreSQL's bigint holds: larger numbers are refused with a 400, not a crash.


@extend_schema_field({"type": "string", "example": "05:30"})
class TimeOfDayField(serializers.Field):
    """A local time of day as "05:30" (or a whole hour, 5), read as hours since midnight."""

    def to_internal_value(self, data):
        try:
            return time_of_day(str(data), self.field_name)
        except InputError as error:
            raise serializers.ValidationError(str(error)) from None

    def to_representation(self, value):
        return clock(value)


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()


class ProjectSerializer(serializers.ModelSerializer):
    labels = serializers.ListField(
        child=serializers.CharField(max_length=100), write_only=True, required=False, default=list
    )

    class Meta:
        model = Project
        fields = ["id", "name", "description", "exclusive_labels", "created_at", "labels"]
        read_only_fields = ["id", "created_at"]


class LabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = Label
        fields = ["id", "name", "description", "shortcut", "position"]
        extra_kwargs = {"position": {"help_text": "place in the vocabulary's order; the first is the active label"}}


class DeploymentSerializer(serializers.ModelSerializer):
    latitude = serializers.FloatField(
        min_value=LATITUDE_RANGE[0], max_value=LATITUDE_RANGE[1], required=False, allow_null=True
    )
    longitude = serializers.FloatField(
        min_value=LONGITUDE_RANGE[0], max_value=LONGITUDE_RANGE[1], required=False, allow_null=True
    )
    timezone = serializers.CharField(
        max_length=64, required=False, help_text="IANA time zone of the site, e.g. Europe/Berlin (default UTC)"
    )
    channel = serializers.IntegerField(
        min_value=0,
        max_value=MAX_CHANNEL,
        required=False,
        allow_null=True,
        help_text="channel of multichannel files to embed, counted from 0; null embeds the mix of all",
    )
    server_folder = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, help_text="shown relative to its audio root"
    )
    held_out = serializers.BooleanField(
        required=False,
        help_text="an evaluation set: never queued for review nor drawn from for weak negatives; "
        "its labels never train, and measure every classifier version",
    )

    class Meta:
        model = Deployment
        fields = ["id", *METADATA_FIELDS, "held_out", "server_folder", "created_at"]
        read_only_fields = ["id", "created_at"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if data.get("server_folder"):
            data["server_folder"] = folder_under_root(data["server_folder"])
        return data

    def validate_server_folder(self, value: str) -> str:
        # A client sending back the folder as shown means no move.
        current = self.instance.server_folder if self.instance is not None else ""
        return current if current and value == folder_under_root(current) else value


class ReembedRequestSerializer(serializers.Serializer):
    hop_s = serializers.FloatField(help_text="seconds between window starts, from a quarter window to a whole one")
    confirm = serializers.BooleanField(default=False, help_text="false: only say what it would do")


class ReembedSerializer(serializers.Serializer):
    hop_s = serializers.FloatField()
    recordings = serializers.IntegerField()
    windows_now = serializers.IntegerField()
    windows_after = serializers.IntegerField()
    labels = serializers.IntegerField(help_text="labels that move onto the new windows their spans cover")
    detections = serializers.IntegerField(help_text="detections removed with the old windows")
    message = serializers.CharField()
    queued = serializers.IntegerField()


class MetadataImportSerializer(serializers.Serializer):
    created = serializers.ListField(child=serializers.CharField())
    updated = serializers.ListField(child=serializers.CharField())


class ProgressSerializer(serializers.Serializer):
    files_total = serializers.IntegerField()
    files_queued = serializers.IntegerField()
    files_embedding = serializers.IntegerField()
    files_done = serializers.IntegerField()
    files_failed = serializers.IntegerField()
    audio_hours_done = serializers.FloatField()
    windows = serializers.IntegerField()
    fraction_done = serializers.FloatField()
    windows_per_s = serializers.FloatField(allow_null=True)
    eta_s = serializers.FloatField(allow_null=True)


class SearchIndexSerializer(serializers.Serializer):
    model = serializers.CharField()
    status = serializers.CharField(help_text="of the latest build: queued, running, done, failed; empty if none")
    progress = serializers.FloatField(allow_null=True, help_text="0..1 while a build runs")
    windows_indexed = serializers.IntegerField()
    windows_not_indexed = serializers.IntegerField(help_text="searched exactly until the next build")
    graphs_built = serializers.IntegerField(
        help_text="while a build runs: deployments and bands of the time of day given a graph of their own so far "
        "(the project's graph serves)"
    )
    graphs_planned = serializers.IntegerField(help_text="while a build runs: the graphs of their own it will make")


class EmbeddingMapSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model.__str__", read_only=True)

    class Meta:
        model = EmbeddingMap
        fields = [
            "id",
            "model",
            "model_name",
            "status",
            "error",
            "progress",
            "windows_total",
            "method",
            "explained_variance",
            "build_seconds",
        ]
        read_only_fields = fields


class EmbeddingMapRequestSerializer(serializers.Serializer):
    model = serializers.PrimaryKeyRelatedField(queryset=EmbeddingModel.objects.all(), help_text="embedding model id")


class MapPointsSerializer(serializers.Serializer):
    window_ids = serializers.ListField(child=serializers.IntegerField())
    x = serializers.ListField(child=serializers.FloatField(), help_text="in [-1, 1]")
    y = serializers.ListField(child=serializers.FloatField(), help_text="in [-1, 1], up")
    category = serializers.ListField(child=serializers.IntegerField(), help_text="an index into categories")
    categories = serializers.ListField(child=serializers.CharField())
    source = serializers.CharField(help_text="what the categories come from: a classifier's version, or empty")


class DeploymentDetailSerializer(DeploymentSerializer):
    """What a deployment's own address answers: it, its progress, doubts about its start
    times, and the state of its project's search indexes."""

    progress = ProgressSerializer(read_only=True)
    start_time_warnings = serializers.ListField(child=serializers.CharField(), read_only=True)
    search_indexes = SearchIndexSerializer(many=True, read_only=True)

    class Meta(DeploymentSerializer.Meta):
        fields = [*DeploymentSerializer.Meta.fields, "progress", "start_time_warnings", "search_indexes"]


class RecordingSerializer(serializers.ModelSerializer):
    class Meta:
        model = Recording
        fields = [
            "id",
            "filename",
            "size_bytes",
            "status",
            "error",
            "warning",
            "duration_s",
            "sample_rate",
            "channels",
            "started_at",
            "started_at_source",
            "windows_done",
            "windows_expected",
        ]


class RecordingStartSerializer(serializers.Serializer):
    started_at = serializers.DateTimeField(
        allow_null=True, help_text="ISO 8601; without a UTC offset it is read in the deployment's time zone"
    )


class SearchRequestSerializer(serializers.Serializer):
    """A query by example. ``window_id`` / ``clip_query_id`` are shorthands for one example."""

    window_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    clip_query_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    positive_window_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False, max_length=20
    )
    negative_window_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False, max_length=20
    )
    positive_clip_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False, max_length=20
    )
    combine = serializers.ChoiceField(choices=Combine.choices, default=Combine.MEAN)
    deployment_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    site = serializers.CharField(required=False, max_length=200)
    date_from = serializers.DateField(required=False)
    date_to = serializers.DateField(required=False)
    hour_from = TimeOfDayField(required=False)
    hour_to = TimeOfDayField(required=False)
    sun_event = serializers.ChoiceField(
        choices=SUN_EVENTS,
        required=False,
        help_text="keep windows within sun_from_min to sun_to_min minutes of the day's sunrise or sunset at the "
        "deployment's coordinates (deployments without coordinates pass no such filter)",
    )
    sun_from_min = serializers.FloatField(
        default=DEFAULT_SUN_FROM_MIN, min_value=-SUN_OFFSET_MAX_MIN, max_value=SUN_OFFSET_MAX_MIN
    )
    sun_to_min = serializers.FloatField(
        default=DEFAULT_SUN_TO_MIN, min_value=-SUN_OFFSET_MAX_MIN, max_value=SUN_OFFSET_MAX_MIN
    )
    predicted_class = serializers.CharField(required=False, max_length=200)
    label_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    labeled = serializers.ChoiceField(choices=LabeledFilter.choices, default=LabeledFilter.ANY)
    one_per_recording = serializers.BooleanField(default=False, help_text="only each recording's best window")
    all_overlapping = serializers.BooleanField(
        default=False,
        help_text="every window of a call where windows overlap; by default only the best of overlapping windows",
    )
    k = serializers.IntegerField(min_value=1, max_value=500, default=50)
    offset = serializers.IntegerField(min_value=0, max_value=499, default=0)

    def validate(self, data):
        positives = data.get("positive_window_ids", []) + ([data["window_id"]] if "window_id" in data else [])
        clips = data.get("positive_clip_ids", []) + ([data["clip_query_id"]] if "clip_query_id" in data else [])
        if not positives and not clips:
            raise serializers.ValidationError("give at least one example: window_id, clip_query_id or their lists")
        data["spec"] = SearchSpec(
            positive_windows=tuple(positives),
            negative_windows=tuple(data.get("negative_window_ids", [])),
            positive_clips=tuple(clips),
            combine=data["combine"],
            filters=SearchFilters(
                deployment_id=data.get("deployment_id"),
                site=data.get("site", ""),
                date_from=data.get("date_from"),
                date_to=data.get("date_to"),
                hour_from=data.get("hour_from"),
                hour_to=data.get("hour_to"),
                predicted_class=data.get("predicted_class", ""),
                label_id=data.get("label_id"),
                labeled=data["labeled"],
                one_per_recording=data["one_per_recording"],
                all_overlapping=data["all_overlapping"],
                sun_event=data.get("sun_event", ""),
                sun_from_min=data["sun_from_min"] if "sun_event" in data else None,
                sun_to_min=data["sun_to_min"] if "sun_event" in data else None,
            ),
        )
        if data.get("sun_event"):
            try:
                sun_event(data["spec"].filters)
            except InputError as error:
                raise serializers.ValidationError(str(error)) from None
        return data


class PredictionSerializer(serializers.Serializer):
    class_name = serializers.CharField()
    logit = serializers.FloatField(help_text="the model's own sigmoid logit: uncalibrated")
    in_range = serializers.BooleanField(
        allow_null=True,
        help_text="within the species' range at the deployment in the recording's week (BirdNET's range model); "
        "null where it cannot say",
    )

    def to_representation(self, instance):
        return {"class_name": instance.class_name, "logit": instance.logit, "in_range": instance.in_range}


class SearchHitSerializer(serializers.Serializer):
    window_id = serializers.IntegerField()
    recording_id = serializers.IntegerField()
    filename = serializers.CharField()
    deployment_id = serializers.IntegerField()
    deployment_name = serializers.CharField()
    site = serializers.CharField()
    start_s = serializers.FloatField()
    end_s = serializers.FloatField()
    started_at = serializers.DateTimeField(allow_null=True, help_text="wall-clock start, in the site's time zone")
    score = serializers.FloatField()
    labels = serializers.ListField(child=serializers.DictField())
    predictions = PredictionSerializer(many=True, help_text="the embedding model's own top classes")


class BandSerializer(serializers.Serializer):
    """An optional band of a box drawn on a spectrogram: both edges or neither."""

    low_hz = serializers.FloatField(min_value=0, max_value=1e6, required=False, help_text="a box: its band's low edge")
    high_hz = serializers.FloatField(min_value=0, max_value=1e6, required=False, help_text="and its high edge")

    def validate(self, data):
        if ("low_hz" in data) != ("high_hz" in data):
            raise serializers.ValidationError("a box's band needs both low_hz and high_hz")
        return data


def band_of(data: dict) -> tuple[float, float] | None:
    return (data["low_hz"], data["high_hz"]) if data.get("low_hz") is not None else None


class RegionQuerySerializer(BandSerializer):
    recording_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    start_s = serializers.FloatField(min_value=0, max_value=1e7)
    end_s = serializers.FloatField(min_value=0, max_value=1e7)


class ClipQuerySerializer(serializers.ModelSerializer):
    class Meta:
        model = ClipQuery
        fields = ["id", "filename", "status", "error", "created_at", "low_hz", "high_hz"]


class BulkAnnotationSerializer(serializers.Serializer):
    windows = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), min_length=1, max_length=500
    )
    label = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    value = serializers.ChoiceField(choices=LabelValue.choices)


class PreviousLabelSerializer(BandSerializer):
    window = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    value = serializers.ChoiceField(choices=LabelValue.choices, allow_null=True, help_text="null: no label")


class RestoreAnnotationsSerializer(serializers.Serializer):
    label = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    changes = PreviousLabelSerializer(many=True, min_length=1, max_length=500)


class BulkAnnotationResultSerializer(serializers.Serializer):
    changed = serializers.IntegerField(help_text="labels given or changed (the others had this value already)")


class ResolvedConflictSerializer(serializers.Serializer):
    removed = serializers.IntegerField(help_text="other annotators' differing labels removed")


class AnnotationRequestSerializer(BandSerializer):
    window = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    label = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    value = serializers.ChoiceField(choices=LabelValue.choices)


class AnnotationSerializer(serializers.ModelSerializer):
    label_name = serializers.CharField(source="label.name", read_only=True)
    annotator = serializers.CharField(source="annotator.username", read_only=True)

    class Meta:
        model = Annotation
        fields = [
            "id",
            "window",
            "label",
            "label_name",
            "value",
            "low_hz",
            "high_hz",
            "annotator",
            "created_at",
            "updated_at",
        ]


class TrainRequestSerializer(serializers.Serializer):
    labels = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), min_length=1, max_length=100
    )
    probe_type = serializers.ChoiceField(choices=ProbeType.choices, default=ProbeType.LINEAR)
    # Leave out to choose it by cross-validation grouped by time block.
    regularization_c = serializers.FloatField(min_value=1e-6, max_value=1e6, required=False, allow_null=True)
    prototypes_per_label = serializers.IntegerField(min_value=1, max_value=64, default=4)
    weak_negatives = serializers.IntegerField(
        min_value=0,
        max_value=100_000,
        required=False,
        allow_null=True,
        help_text="unlabeled windows drawn as weak negatives (likely calls of the label left out); "
        "leave out for as many as the labels call for, 0 for none",
    )


class ThresholdRequestSerializer(serializers.Serializer):
    label = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    threshold = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    min_precision = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)

    def validate(self, data):
        if ("threshold" in data) == ("min_precision" in data):
            raise serializers.ValidationError("give exactly one of threshold or min_precision")
        return data


class QueueItemSerializer(serializers.Serializer):
    window_id = serializers.IntegerField()
    score = serializers.FloatField()


class QueueSuggestionSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="the queue to open: top, margin or bins")
    reason = serializers.CharField()
    positives = serializers.IntegerField(help_text="windows labeled positive, outside held-out deployments")
    negatives = serializers.IntegerField()


class SiteDaySerializer(serializers.Serializer):
    label = serializers.CharField()
    site = serializers.CharField()
    day = serializers.DateField(allow_null=True)
    detections = serializers.IntegerField()


class LabelImportSerializer(serializers.ModelSerializer):
    """A label import: what it matched, how it compares with existing labels, what it wrote."""

    windows = serializers.SerializerMethodField()

    class Meta:
        model = LabelImport
        fields = [
            "id",
            "deployment",
            "file_name",
            "status",
            "mode",
            "error",
            "selections",
            "unmatched_selections",
            "unmatched_files",
            "windows",
            "new",
            "same",
            "changed",
            "disagreeing",
            "disagreeing_annotators",
            "written",
            "created_at",
        ]
        read_only_fields = fields

    def get_windows(self, label_import) -> int:
        """(window, label) pairs the table labels: new + same + changed."""
        return label_import.new + label_import.same + label_import.changed


class ImportDecisionSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=ImportMode.choices)


class ClassifierOutputSerializer(serializers.ModelSerializer):
    label_name = serializers.CharField(source="label.name")

    class Meta:
        model = ClassifierLabel
        fields = [
            "label",
            "label_name",
            "index",
            "train_positives",
            "train_negatives",
            "weak_negatives_used",
            "weak_negatives_left_out",
            "evaluated_on",
            "eval_positives",
            "eval_negatives",
            "roc_auc",
            "average_precision",
            "held_out_interval",
            "cross_validation",
            "regularization_c",
            "threshold",
            "windows_above_threshold",
        ]

    windows_above_threshold = serializers.SerializerMethodField(
        help_text="the project's scored windows at or above the threshold (to 0.01); null before scoring"
    )

    held_out_interval = serializers.SerializerMethodField(
        help_text="95% bootstrap intervals, [low, high], of roc_auc and average_precision; null without both classes"
    )

    def get_windows_above_threshold(self, output: ClassifierLabel) -> int | None:
        return windows_above(output, output.threshold)

    def get_held_out_interval(self, output: ClassifierLabel) -> dict[str, list[float]] | None:
        interval = held_out_interval(output)
        if interval is None:
            return None
        return {
            "roc_auc": [interval.roc_auc_low, interval.roc_auc_high],
            "average_precision": [interval.average_precision_low, interval.average_precision_high],
        }


class ClassifierSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    probe_type = serializers.CharField()
    status = serializers.CharField()
    error = serializers.CharField()
    embedding_model = serializers.CharField()
    created_at = serializers.DateTimeField()
    scoring_status = serializers.CharField(help_text="scoring of every project window, which review queues need")
    windows_to_score = serializers.IntegerField()
    windows_scored = serializers.IntegerField()
    outputs = ClassifierOutputSerializer(many=True)


class RunRequestSerializer(serializers.Serializer):
    deployment = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    threshold = serializers.FloatField(
        min_value=0.0,
        max_value=1.0,
        required=False,
        allow_null=True,
        default=None,
        help_text="one threshold for every label; left out, each label's threshold chosen on its PR curve",
    )


class InferenceRunSerializer(serializers.ModelSerializer):
    classifier_version = serializers.IntegerField(source="classifier.version")

    class Meta:
        model = InferenceRun
        fields = [
            "id",
            "classifier",
            "classifier_version",
            "deployment",
            "threshold",
            "label_thresholds",
            "status",
            "error",
            "windows_total",
            "windows_scored",
            "created_at",
        ]


class DetectionSerializer(serializers.Serializer):
    window_id = serializers.IntegerField(source="window.id")
    recording = serializers.CharField(source="window.recording.filename")
    start_s = serializers.FloatField(source="window.start_s")
    end_s = serializers.FloatField(source="window.end_s")
    label = serializers.CharField(source="label.name")
    score = serializers.FloatField()


class DetectionEventSerializer(serializers.Serializer):
    """Consecutive detections of a label in a recording, as one event."""

    window_id = serializers.IntegerField(source="peak_window_id", help_text="the peak window")
    recording = serializers.CharField(source="peak_window.recording.filename")
    start_s = serializers.FloatField()
    end_s = serializers.FloatField()
    label = serializers.CharField(source="label.name")
    score = serializers.FloatField(source="peak_score")
    windows = serializers.IntegerField()


class UploadResultSerializer(serializers.Serializer):
    recordings = RecordingSerializer(many=True)
    rejected = serializers.ListField(child=serializers.DictField())


class QueuedSerializer(serializers.Serializer):
    queued = serializers.IntegerField()


class SearchResultSerializer(serializers.Serializer):
    model = serializers.CharField()
    path = serializers.ChoiceField(
        choices=SearchPath.choices,
        help_text="How the hits were found: the least exact of the paths that answered.",
    )
    rescued = serializers.BooleanField(
        help_text="The index's answer scored below windows around the examples (it missed their "
        "neighbourhood), so every window passing the filters was searched instead (the path says how)."
    )
    standby = serializers.BooleanField(help_text="a hot standby of the database answered, not the primary")
    standby_lag_s = serializers.FloatField(help_text="how many seconds the standby's state was behind the primary's")
    hits = SearchHitSerializer(many=True)


class DetectionPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    detections = DetectionSerializer(many=True)


class WindowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    start_s = serializers.FloatField()
    end_s = serializers.FloatField()
    model_id = serializers.IntegerField()
    predictions = PredictionSerializer(many=True, help_text="the embedding model's own top classes, best first")


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", max_length=150)

    class Meta:
        model = Membership
        fields = ["id", "username", "role"]


class InvitationSerializer(serializers.ModelSerializer):
    project_name = serializers.CharField(source="project.name", read_only=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = Invitation
        fields = ["id", "project", "project_name", "username", "role", "created_at", "status"]
        read_only_fields = fields

    def get_status(self, invitation) -> str:
        return "invited"


class InvitationLinkRequestSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices, default=Role.ANNOTATOR)
    email = serializers.EmailField(required=False, allow_blank=True, help_text="also mail the link here")
    valid_days = serializers.IntegerField(min_value=1, max_value=MAX_INVITATION_LINK_DAYS, default=INVITATION_LINK_DAYS)


class InvitationLinkSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None)

    class Meta:
        model = InvitationLink
        fields = ["id", "role", "email", "created_by", "created_at", "expires_at"]
        read_only_fields = fields


class IssuedInvitationLinkSerializer(InvitationLinkSerializer):
    """A new link: its address is in this answer only (the server keeps a hash)."""

    url = serializers.CharField()
    mail_sent = serializers.BooleanField()
    mail_error = serializers.CharField()

    class Meta(InvitationLinkSerializer.Meta):
        fields = [*InvitationLinkSerializer.Meta.fields, "url", "mail_sent", "mail_error"]
        read_only_fields = fields


class InvitationAnswerSerializer(serializers.Serializer):
    accept = serializers.BooleanField()


class RoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class LabelChangeSerializer(serializers.ModelSerializer):
    label_name = serializers.CharField(source="label.name")
    annotator = serializers.CharField(source="annotator.username")

    class Meta:
        model = LabelChange
        fields = [
            "label",
            "label_name",
            "annotator",
            "old_value",
            "old_low_hz",
            "old_high_hz",
            "new_value",
            "new_low_hz",
            "new_high_hz",
            "changed_at",
        ]


class DeletionSummarySerializer(serializers.Serializer):
    name = serializers.CharField()
    deployments = serializers.IntegerField()
    recordings = serializers.IntegerField()
    audio_hours = serializers.FloatField()
    windows = serializers.IntegerField()
    annotations = serializers.IntegerField()
    classifiers = serializers.IntegerField()
    detections = serializers.IntegerField()
    uploaded_files = serializers.IntegerField()


class DensityRowSerializer(serializers.Serializer):
    label = serializers.CharField()
    day = serializers.DateField(allow_null=True, help_text="local day; null: the whole deployment, or starts unknown")
    total = serializers.BooleanField(help_text="the row over the whole deployment")
    windows = serializers.IntegerField(source="estimate.windows")
    density = serializers.FloatField(source="estimate.density", help_text="share of windows holding the call")
    low = serializers.FloatField(source="estimate.low", help_text="90% interval")
    high = serializers.FloatField(source="estimate.high")
    validated = serializers.IntegerField(help_text="windows of the bins' random samples that people labeled")
    validations_needed = serializers.IntegerField(
        help_text="more validated windows (the bins review queue) before the density can be stated; 0: enough"
    )


class HopliteImportSerializer(serializers.ModelSerializer):
    """A hoplite database import and its progress."""

    class Meta:
        model = HopliteImport
        fields = [
            "id",
            "source_name",
            "status",
            "error",
            "embedding_model",
            "deployments_total",
            "done_deployments",
            "windows_total",
            "windows_done",
            "annotations_written",
            "recordings_without_audio",
            "labels_added",
            "created_at",
        ]


class HopliteImportRequestSerializer(serializers.Serializer):
    file = serializers.FileField(required=False, help_text="a zip of the hoplite database's folder")
    folder = serializers.CharField(required=False, help_text="or a server folder granted to the project")
    audio_folder = serializers.CharField(required=False, help_text="a granted server folder with the audio")


class HopliteExportSerializer(serializers.ModelSerializer):
    """A hoplite database export and its progress; ``download`` once done."""

    download = serializers.SerializerMethodField()

    class Meta:
        model = HopliteExport
        fields = [
            "id",
            "deployment",
            "embedding_model",
            "status",
            "error",
            "windows_total",
            "windows_done",
            "size_bytes",
            "download",
            "created_at",
        ]

    def get_download(self, export) -> str | None:
        if export.status != TaskStatus.DONE:
            return None
        return f"/api/projects/{export.project_id}/hoplite-exports/{export.pk}/download/"


class HopliteExportRequestSerializer(serializers.Serializer):
    deployment = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="one deployment; the whole project without"
    )
    model = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="the embedding model, where there are several"
    )
