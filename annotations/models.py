"""The domain of agile modeling: projects, audio, embeddings, labels, classifiers.

Embeddings of different models never mix: every ``Window`` names the
``EmbeddingModel`` that produced it, and searches and classifiers are tied to one model.
The ``embedding`` column is an untyped pgvector ``halfvec`` (float16: half the bytes of
``vector``, kept inline in the row) so that models of different dimensions share one
table; each project gets its own partial HNSW index per model over
``embedding::halfvec(dim)`` (``SearchIndex``, see ``annotations.search_index``).
"""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from pgvector.django import BitField, HalfVectorField, VectorField


class Project(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Labels that never share a window (species of one guild, call types): training counts
    # a window positive for one label as a negative for the others.
    exclusive_labels = models.BooleanField(default=False)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"  # manages deployments, members, vocabulary
    ANNOTATOR = "annotator", "Annotator"  # searches, labels, trains, runs, exports
    VIEWER = "viewer", "Viewer"  # reads only


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) in {self.project}"


class Invitation(models.Model):
    """An offer of a role in a project to a user name, until that user accepts or declines.

    Kept by name, not by account, so that inviting a name that has no account looks
    exactly like inviting one that has: the members form is no oracle of user names.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    username = models.CharField(max_length=150)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["username"]
        constraints = [models.UniqueConstraint(fields=["project", "username"], name="one_invitation_per_name")]

    def __str__(self) -> str:
        return f"{self.username} ({self.role}) to {self.project}"


class InvitationLink(models.Model):
    """A one-time link that lets whoever holds it join a project in a role, creating an
    account on the way if they have none: how a new collaborator is brought in without a
    mail server. Only the token's SHA-256 is kept; the link itself is shown once."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitation_links")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    token_sha256 = models.CharField(max_length=64, unique=True)
    email = models.EmailField(blank=True)  # where the link was also mailed, if anywhere
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    used_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"link to {self.project} as {self.role}"


class Label(models.Model):
    """A term of a project's vocabulary: a species, a call type, a sound source."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    # The key that makes this the active label on labeling pages (annotations.vocabulary).
    shortcut = models.CharField(max_length=1, blank=True)
    # The vocabulary's own order, set by its admins: the first label is the active one at first.
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="unique_label_name")]

    def __str__(self) -> str:
        return self.name


class SketchField(BitField):
    """A ``bit varying`` column: one bit per dimension, whatever the model's (a bare
    ``bit``, which pgvector's field declares without a length, means one bit)."""

    def db_type(self, connection) -> str:
        return "bit varying"


class EmbeddingModel(models.Model):
    """Which model made an embedding, down to the framing that defines its windows."""

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=100)
    embedding_dim = models.PositiveIntegerField()
    window_s = models.FloatField()
    hop_s = models.FloatField()
    sample_rate = models.PositiveIntegerField()
    # The model's own output classes (e.g. species codes), indexed by Window.top_classes.
    class_names = ArrayField(models.CharField(max_length=200), default=list, blank=True)
    # What Window.sketch's bits are signs against: the mean of the first windows written,
    # each scaled to unit length (real embeddings are non-negative with a large common mean:
    # the signs of uncentred ones say little, and cosine ignores length).
    sketch_center = HalfVectorField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["name", "version", "window_s", "hop_s", "sample_rate"], name="unique_model_framing"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.embedding_dim}-d, {self.window_s:g} s windows)"


class Deployment(models.Model):
    """One recorder at one site for one season."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="deployments")
    name = models.CharField(max_length=200)
    site = models.CharField(max_length=200, blank=True)
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    recorder = models.CharField(max_length=200, blank=True)  # e.g. "AudioMoth 1.2 #24F3190"
    # IANA name of the site's time zone: local dates and times of day are read in it.
    timezone = models.CharField(max_length=64, default="UTC")
    deployed_on = models.DateField(null=True, blank=True)
    retrieved_on = models.DateField(null=True, blank=True)
    # Which channel of multichannel files is embedded (0-based); null embeds the mix of all.
    channel = models.PositiveSmallIntegerField(null=True, blank=True)
    # A server folder registered by an admin (read in place), or empty for uploads.
    server_folder = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # When the latest ingest was queued: throughput and ETA are measured from here.
    ingest_started_at = models.DateTimeField(null=True, blank=True)
    # An evaluation set: never queued for review nor drawn from for weak negatives; its
    # labels never train, and measure every classifier version alike.
    held_out = models.BooleanField(default=False)
    # Seconds between the starts of consecutive windows (None: the model's window length,
    # no overlap). A shorter hop finds calls that fall across a window's edge, at the cost
    # of window_s / hop_s times the windows.
    hop_s = models.FloatField(null=True, blank=True)
    # Time expansion, for sound outside the model's band (bats at 256-384 kHz): the files
    # are played to the model at this speed (0.1: ten times slower and an octave and a
    # bit lower), and only between low_hz and high_hz of the recording's real frequencies
    # where a band is set. Times and frequencies shown and stored stay the recording's own.
    speed_factor = models.FloatField(default=1.0)
    low_hz = models.FloatField(null=True, blank=True)
    high_hz = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class FolderGrant(models.Model):
    """A server folder (and everything under it) that site staff let one project read.

    A project admin registers deployments only from folders granted to the project, so
    that no project reads another's audio by naming its folder.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="folder_grants")
    folder = models.CharField(max_length=1000)  # resolved, inside PERCH_AGILE_AUDIO_ROOTS
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["folder"]
        constraints = [models.UniqueConstraint(fields=["project", "folder"], name="folder_grant_once")]

    def __str__(self) -> str:
        return self.folder


class RecordingStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    EMBEDDING = "embedding", "Embedding"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class StartTimeSource(models.TextChoices):
    UNKNOWN = "", "Unknown"
    FILENAME = "filename", "File name"
    WAV_COMMENT = "wav_comment", "WAV comment (AudioMoth)"
    EDITED = "edited", "Edited by a person"
    HOPLITE = "hoplite", "A hoplite database"


class Recording(models.Model):
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="recordings")
    # Absolute path of the audio file on the server (uploads live under MEDIA_ROOT).
    path = models.CharField(max_length=1000)
    filename = models.CharField(max_length=300)
    size_bytes = models.BigIntegerField(default=0)
    # Identifies the file's content (annotations.deployments.file_fingerprint), so that a
    # file moved or renamed inside its folder, or a folder mounted elsewhere, is found again.
    fingerprint = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=RecordingStatus.choices, default=RecordingStatus.QUEUED)
    # Why a recording failed, or what was odd about one that was ingested anyway.
    error = models.TextField(blank=True)
    warning = models.TextField(blank=True)
    duration_s = models.FloatField(null=True)
    sample_rate = models.PositiveIntegerField(null=True)
    channels = models.PositiveSmallIntegerField(null=True)
    # Read from the recorder's file name where it carries one (annotations.recording_time).
    started_at = models.DateTimeField(null=True, blank=True)
    started_at_source = models.CharField(max_length=16, choices=StartTimeSource.choices, blank=True)
    windows_done = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)  # embedding runs started, to spot retries
    windows_expected = models.PositiveIntegerField(null=True)
    embedding_model = models.ForeignKey(EmbeddingModel, on_delete=models.PROTECT, null=True, related_name="+")
    # The hop its windows were cut at, in the recording's own seconds (None: the embedding
    # model's own hop).
    hop_s = models.FloatField(null=True)
    # The speed its audio was played to the model at (its deployment's speed_factor when it
    # was embedded): a window lasts the model's window_s times this, in the file's time.
    speed_factor = models.FloatField(default=1.0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["filename", "id"]
        constraints = [models.UniqueConstraint(fields=["deployment", "path"], name="unique_recording_path")]

    def __str__(self) -> str:
        return self.filename


class Window(models.Model):
    """One model window of a recording and its embedding. Written by COPY, never by the ORM.

    ``project``, ``deployment`` and ``started_at`` repeat what the recording says, so that a
    filtered search tests each candidate row on its own, without joins.
    """

    # No single-column indexes: one_window_per_start leads with the recording, and each
    # index costs every COPYed row. Project and deployment follow from the recording, which
    # the database checks; checking them too would cost two more lookups per row.
    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="windows", db_index=False)
    model = models.ForeignKey(EmbeddingModel, on_delete=models.PROTECT, related_name="windows", db_index=False)
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    deployment = models.ForeignKey(
        Deployment, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    start_s = models.FloatField()
    end_s = models.FloatField()
    # When the window's audio began (UTC); null while the recording's start is unknown.
    started_at = models.DateTimeField(null=True)
    embedding = HalfVectorField()
    # One bit per dimension: is the unit-length embedding above the model's sketch_center
    # there? And the length of that residual (unit embedding - centre). A filtered search
    # estimates every window's cosine with the query from these two, read from
    # one_window_per_start alone, and compares only the best estimates exactly
    # (annotations.search.sketch).
    sketch = SketchField()
    sketch_norm = models.FloatField()
    # The model's own highest-scoring classes for this window, best first: indices into
    # model.class_names and their logits. Null for models without a classifier head.
    top_classes = ArrayField(models.IntegerField(), null=True)
    top_logits = ArrayField(models.FloatField(), null=True)

    class Meta:
        ordering = ["recording_id", "start_s"]
        constraints = [
            # It also carries what a filtered search's first pass reads (annotations.search),
            # so that the pass never touches the table's 2 KB rows.
            models.UniqueConstraint(
                fields=["recording", "model", "start_s"],
                include=["id", "deployment", "started_at", "sketch", "sketch_norm"],
                name="one_window_per_start",
            )
        ]
        # A project's windows of one model in id order: the part of it not yet in its
        # search index (ids above SearchIndex.max_window_id) is read through this.
        indexes = [models.Index(fields=["project", "model", "id"], name="window_project_model_id")]

    def __str__(self) -> str:
        return f"{self.recording_id}@{self.start_s:g}s"


class LabelValue(models.TextChoices):
    POSITIVE = "positive", "Positive"
    NEGATIVE = "negative", "Negative"
    UNSURE = "unsure", "Unsure"


class Annotation(models.Model):
    """One annotator's judgement of one window for one label."""

    window = models.ForeignKey(Window, on_delete=models.CASCADE, related_name="annotations")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="annotations")
    value = models.CharField(max_length=16, choices=LabelValue.choices)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations")
    # Who or what gave an imported label, as the source said (hoplite's provenance); empty
    # for labels given here. A database default: label imports insert rows by SQL.
    provenance = models.CharField(max_length=200, blank=True, db_default="")
    # A label given to a box drawn on the spectrogram keeps the box's band (Raven's low
    # and high frequency); null for a label of the whole window.
    low_hz = models.FloatField(null=True, blank=True)
    high_hz = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(fields=["window", "label", "annotator"], name="one_annotation_per_annotator")
        ]

    def __str__(self) -> str:
        return f"{self.label_id} {self.value} by {self.annotator_id} on window {self.window_id}"


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PLANNED = "planned", "Waiting for a decision"  # it would change existing labels
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ImportMode(models.TextChoices):
    KEEP = "keep", "Keep existing labels"
    OVERWRITE = "overwrite", "Overwrite existing labels"


class LabelImport(models.Model):
    """A table of labels from another tool, matched to windows before anything is written.

    The plan (``window_ids``, ``label_ids``, ``values``: one entry per labeled window and
    label) is compared with the importer's own labels: ``new``, ``same`` and ``changed``;
    ``disagreeing`` counts other annotators' differing labels, which an import never touches.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="label_imports")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="label_imports")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    file_name = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    mode = models.CharField(max_length=16, choices=ImportMode.choices, blank=True)
    error = models.TextField(blank=True)
    # What a worker still has to read (large tables); emptied once planned.
    text = models.TextField(blank=True)
    label_override = models.CharField(max_length=100, blank=True)
    recording_name = models.CharField(max_length=300, blank=True)
    selections = models.PositiveIntegerField(default=0)
    unmatched_selections = models.PositiveIntegerField(default=0)
    unmatched_files = ArrayField(models.CharField(max_length=300), default=list, blank=True)
    window_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    label_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    values = ArrayField(models.CharField(max_length=16), default=list, blank=True)
    # Each planned label's box (its selection's Low and High Freq), null for the whole window.
    low_hz = ArrayField(models.FloatField(null=True), default=list, blank=True)
    high_hz = ArrayField(models.FloatField(null=True), default=list, blank=True)
    new = models.PositiveIntegerField(default=0)
    same = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    disagreeing = models.PositiveIntegerField(default=0)
    disagreeing_annotators = ArrayField(models.CharField(max_length=150), default=list, blank=True)
    written = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.file_name or 'label table'} ({self.status})"


class LabelChange(models.Model):
    """The audit trail: every label given, changed or removed, and by whom.

    ``old_value`` is empty for a new label, ``new_value`` empty for a removed one. A label
    on a box keeps its band before and after (Hz; null for the whole window), so that a
    box moved in frequency alone is a change too.
    """

    window = models.ForeignKey(Window, on_delete=models.CASCADE, related_name="label_changes")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    old_value = models.CharField(max_length=16, choices=LabelValue.choices, blank=True)
    new_value = models.CharField(max_length=16, choices=LabelValue.choices, blank=True)
    old_low_hz = models.FloatField(null=True, blank=True)
    old_high_hz = models.FloatField(null=True, blank=True)
    new_low_hz = models.FloatField(null=True, blank=True)
    new_high_hz = models.FloatField(null=True, blank=True)
    changed_at = models.DateTimeField(auto_now_add=True)
    # The table the change came from, when it was imported.
    label_import = models.ForeignKey(
        "LabelImport", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.old_value or '-'} -> {self.new_value or '-'} by {self.annotator_id}"


class ClipQuery(models.Model):
    """An uploaded example clip, embedded by a worker so that it can be searched with."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="clip_queries")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    path = models.CharField(max_length=1000)
    filename = models.CharField(max_length=300)
    # A region dragged on a recording's spectrogram is a clip of that recording...
    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    # ...and both kinds may be trimmed to [start_s, end_s) seconds of their audio.
    start_s = models.FloatField(null=True, blank=True)
    end_s = models.FloatField(null=True, blank=True)
    # A box dragged in time and frequency: only this band of the region is embedded.
    low_hz = models.FloatField(null=True, blank=True)
    high_hz = models.FloatField(null=True, blank=True)
    embedding_model = models.ForeignKey(EmbeddingModel, on_delete=models.PROTECT, null=True, related_name="+")
    status = models.CharField(max_length=16, choices=RecordingStatus.choices, default=RecordingStatus.QUEUED)
    error = models.TextField(blank=True)
    # Mean of the clip's window embeddings (a clip shorter than a window is zero-padded).
    embedding = VectorField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.filename


class ProbeType(models.TextChoices):
    LINEAR = "linear", "Linear probe (logistic regression)"
    PROTOTYPE = "prototype", "Prototype probe (best cosine match among learned prototypes)"


class TaskStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Classifier(models.Model):
    """An immutable trained probe: one version per training run."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="classifiers")
    version = models.PositiveIntegerField()
    probe_type = models.CharField(max_length=16, choices=ProbeType.choices, default=ProbeType.LINEAR)
    embedding_model = models.ForeignKey(EmbeddingModel, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED)
    error = models.TextField(blank=True)
    # Hyper-parameters. A null regularisation is chosen per label by grouped cross-validation.
    regularization_c = models.FloatField(null=True, blank=True)
    prototypes_per_label = models.PositiveSmallIntegerField(default=4)
    # Random unlabeled windows taken as negatives, as perch-hoplite does; null: as many as
    # the labels call for (annotations.weak_negatives.weak_negative_count).
    weak_negatives = models.PositiveIntegerField(null=True, blank=True)
    weak_negative_weight = models.FloatField(default=0.05)
    eval_fraction = models.FloatField(default=0.25)
    random_seed = models.PositiveIntegerField(default=0)
    # Linear probes: float32 [embedding_dim, n_labels], columns in ClassifierLabel.index order,
    # and float32 [n_labels]: logit = embedding @ weights + bias (perch-hoplite's beta, beta_bias).
    weights = models.BinaryField(null=True)
    bias = models.BinaryField(null=True)
    # Every window of the project scored once after training (WindowScore), with progress;
    # empty until the scoring task starts.
    scoring_status = models.CharField(max_length=16, choices=TaskStatus.choices, blank=True)
    windows_to_score = models.PositiveIntegerField(default=0)
    windows_scored = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-version"]
        constraints = [models.UniqueConstraint(fields=["project", "version"], name="unique_classifier_version")]

    def __str__(self) -> str:
        return f"v{self.version}"


class EvaluationSource(models.TextChoices):
    HELD_OUT_DEPLOYMENTS = "deployments", "the held-out deployments' labels"
    TIME_BLOCKS = "time blocks", "labels in held-out time blocks"
    NOTHING = "nothing", "nothing: too few labels to hold any out"


class ClassifierLabel(models.Model):
    """One output of a classifier, with its held-out quality."""

    classifier = models.ForeignKey(Classifier, on_delete=models.CASCADE, related_name="outputs")
    # RESTRICT: a label with classifiers cannot be deleted on its own, only with its project.
    label = models.ForeignKey(Label, on_delete=models.RESTRICT, related_name="+")
    index = models.PositiveSmallIntegerField()
    train_positives = models.PositiveIntegerField(default=0)
    train_negatives = models.PositiveIntegerField(default=0)
    eval_positives = models.PositiveIntegerField(default=0)
    eval_negatives = models.PositiveIntegerField(default=0)
    # Weak negatives this label trained on, and those drawn but left out as likely positives.
    weak_negatives_used = models.PositiveIntegerField(default=0)
    weak_negatives_left_out = models.PositiveIntegerField(default=0)
    # What the held-out measures were taken on (EvaluationSource).
    evaluated_on = models.CharField(max_length=16, choices=EvaluationSource.choices, blank=True)
    # Null when the held-out set lacks positives or negatives: nothing to measure.
    roc_auc = models.FloatField(null=True)
    average_precision = models.FloatField(null=True)
    # The held-out scores and truths behind the measures, float32 [n_eval] and uint8 [n_eval]:
    # the PR curve and the score histogram are drawn from them.
    eval_scores = models.BinaryField(null=True)
    eval_targets = models.BinaryField(null=True)
    regularization_c = models.FloatField(null=True)  # linear: the C used
    # Prototype probes (annotations.probes.PrototypeHead): float32 [K, embedding_dim] and
    # [J, embedding_dim] unit rows, the temperature t of the smoothed max, and
    # probability = sigmoid(calibration_a * (smax_t(cos, prototypes) - smax_t(cos, negative_prototypes))
    # + calibration_b). Versions trained before negative prototypes have none and t = 0 (the max).
    prototypes = models.BinaryField(null=True)
    negative_prototypes = models.BinaryField(null=True)
    prototype_temperature = models.FloatField(default=0.0)
    # Quality on each cross-validation fold over time blocks that could train and measure
    # this label: [{"positives", "negatives", "roc_auc", "average_precision"}].
    cross_validation = models.JSONField(default=list)
    calibration_a = models.FloatField(null=True)
    calibration_b = models.FloatField(null=True)
    # The user's choice on the PR curve; a setting, not part of the trained model.
    threshold = models.FloatField(default=0.5)
    # How many of the project's scored windows fall in each of SCORE_BINS equal bins of
    # [0, 1]: windows above any threshold, without reading the scores again.
    score_histogram = ArrayField(models.BigIntegerField(), null=True)

    class Meta:
        ordering = ["classifier", "index"]
        constraints = [
            models.UniqueConstraint(fields=["classifier", "index"], name="unique_output_index"),
            models.UniqueConstraint(fields=["classifier", "label"], name="unique_output_label"),
        ]

    def __str__(self) -> str:
        return f"output {self.index} of classifier {self.classifier_id}"


class ClassifierExample(models.Model):
    """The labels snapshot: each window a classifier version learned from or was measured on."""

    classifier = models.ForeignKey(Classifier, on_delete=models.CASCADE, related_name="examples")
    window = models.ForeignKey(Window, on_delete=models.CASCADE, related_name="+")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="+")
    is_positive = models.BooleanField()
    held_out = models.BooleanField()
    weak = models.BooleanField(default=False)  # an unlabeled window taken as a weak negative

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["classifier", "window", "label"], name="one_example_per_window_label")
        ]

    def __str__(self) -> str:
        return f"{'+' if self.is_positive else '-'} window {self.window_id} for classifier {self.classifier_id}"


class RealField(models.FloatField):
    """A 4-byte float column: scores need no more, and there are millions of them."""

    def db_type(self, connection) -> str:
        return "real"


class WindowScore(models.Model):
    """One classifier output's score (probability) for one window, stored once per version.

    Review queues, histograms and inference runs read these instead of embeddings. The
    database deletes them with their window or classifier (statement triggers, migration
    0005), so that Django never collects millions of them in memory.
    """

    pk = models.CompositePrimaryKey("classifier_id", "output_index", "window_id")
    classifier = models.ForeignKey(Classifier, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    output_index = models.PositiveSmallIntegerField()  # ClassifierLabel.index
    window = models.ForeignKey(Window, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    # The window's, copied: a deployment's queue reads its own scores in order
    # (window_score_by_deployment) instead of walking the project's from the top.
    deployment = models.ForeignKey(
        Deployment, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, null=True, related_name="+"
    )
    score = RealField()

    class Meta:
        indexes = [
            models.Index(fields=["classifier", "output_index", "score"], name="window_score_ranking"),
            models.Index(
                fields=["classifier", "output_index", "deployment", "score"], name="window_score_by_deployment"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.score:.3f} for output {self.output_index} on window {self.window_id}"


class SunDay(models.Model):
    """Sunrise and sunset (UTC) of one local day at a deployment's place
    (``annotations.sun``): filters relative to the sun read them in SQL. Null where the sun
    does not rise or set that day. The place and zone they were worked out for are kept,
    so that moving a deployment makes them be worked out again."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    sunrise = models.DateTimeField(null=True)
    sunset = models.DateTimeField(null=True)
    latitude = models.FloatField()
    longitude = models.FloatField()
    timezone = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["deployment", "day"], name="one_sun_day_per_deployment")]
        # A window passes "from A to B minutes after sunrise" when a sunrise of its
        # deployment lies in (start - B, start - A]: one range scan per window.
        indexes = [
            models.Index(fields=["deployment", "sunrise"], name="sun_day_by_sunrise"),
            models.Index(fields=["deployment", "sunset"], name="sun_day_by_sunset"),
        ]

    def __str__(self) -> str:
        return f"sun at deployment {self.deployment_id} on {self.day}"


class SearchIndex(models.Model):
    """A project's HNSW index over one model's windows: those with ids up to ``max_window_id``.

    The index is over ``vector_table``, a table of (window_id, deployment_id, started_at,
    local_second, reduced) built with it:
    each window's reduced vector under ``reduction`` (``annotations.search_reduction``).
    Windows written later are not in it (an insert into an HNSW index costs many times a
    plain one), so searches scan them exactly until the index is rebuilt by a worker.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="search_indexes")
    model = models.ForeignKey(EmbeddingModel, on_delete=models.CASCADE, related_name="+")
    index_name = models.CharField(max_length=63, blank=True)  # the PostgreSQL index; empty before the first build
    vector_table = models.CharField(max_length=63, blank=True)  # the table it indexes
    reduction = models.BinaryField(null=True)  # search_reduction.Reduction.to_bytes()
    probe = models.BinaryField(null=True)  # search_probe.IndexProbe.to_bytes(): a sample of its windows
    # Its table carries each window's deployment_id and started_at (built since migration 0037).
    places = models.BooleanField(default=False)
    # Deployments with an HNSW graph of their own on ``vector_table`` (a partial index,
    # ``{index_name}_d{deployment}``): searches filtered to them walk those graphs.
    deployment_graphs = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # Bands of the local time of day (``search_index.HOUR_BAND_S`` each, 0 from midnight)
    # with a graph of their own (``{index_name}_h{band}``): searches by time of day walk them.
    hour_graphs = ArrayField(models.SmallIntegerField(), default=list, blank=True)
    # "deployment_id=Zone/Name" of each deployment whose windows' local times of day its
    # table carries (column local_second): where a zone changed since, the hours' graphs
    # do not serve, and the index is wanted again. Empty for tables without local times.
    local_zones = ArrayField(models.CharField(max_length=80), default=list, blank=True)
    # Deployments' and hours' graphs are built after ``index_name`` serves, the largest
    # deployment first; the graphs the running build will have made (0 outside that phase).
    graphs_planned = models.IntegerField(default=0)
    vectors_written = models.BigIntegerField(default=0)  # rows of the running build's table so far
    max_window_id = models.BigIntegerField(default=0)
    windows = models.BigIntegerField(default=0)  # windows in the index
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED)
    error = models.TextField(blank=True)
    build_started_at = models.DateTimeField(null=True)
    build_seconds = models.FloatField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "model"], name="one_search_index_per_model")]

    def __str__(self) -> str:
        return f"search index of {self.project_id} for model {self.model_id} (<= {self.max_window_id})"


class InferenceRun(models.Model):
    """A classifier scored over every window of one deployment."""

    classifier = models.ForeignKey(Classifier, on_delete=models.CASCADE, related_name="runs")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="inference_runs")
    # One threshold for every label, or null: each label's threshold chosen on its PR curve.
    threshold = models.FloatField(null=True, blank=True)
    # The threshold each output (by index) was run at, fixed when the run was requested.
    label_thresholds = ArrayField(models.FloatField(), default=list)
    # Whether the worker counted its detections around sunrise and sunset (runs made
    # before it did have no such counts: SunDetectionCount).
    sun_counted = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED)
    error = models.TextField(blank=True)
    windows_total = models.PositiveIntegerField(default=0)
    windows_scored = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"run {self.pk} of classifier {self.classifier_id} on deployment {self.deployment_id}"


class Detection(models.Model):
    """A window whose classifier score for a label reached the run's threshold."""

    run = models.ForeignKey(InferenceRun, on_delete=models.CASCADE, related_name="detections")
    window = models.ForeignKey(Window, on_delete=models.CASCADE, related_name="+")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()

    class Meta:
        ordering = ["-score"]
        indexes = [models.Index(fields=["run", "label", "-score"], name="detection_ranking")]

    def __str__(self) -> str:
        return f"{self.label_id} {self.score:.3f} on window {self.window_id}"


class DetectionEvent(models.Model):
    """Consecutive detections of one label in one recording (windows that overlap or
    touch, all at or above the run's threshold), as one call or bout: what an ecologist
    counts, where overlapping windows would count one call two or three times."""

    run = models.ForeignKey(InferenceRun, on_delete=models.CASCADE, related_name="events")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="+")
    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="+")
    start_s = models.FloatField()  # in the recording: the first window's start
    end_s = models.FloatField()  # the last window's end
    started_at = models.DateTimeField(null=True)  # the first window's wall-clock start; null where unknown
    peak_score = models.FloatField()
    peak_window = models.ForeignKey(Window, on_delete=models.CASCADE, related_name="+")
    windows = models.PositiveIntegerField()

    class Meta:
        ordering = ["-peak_score"]
        indexes = [models.Index(fields=["run", "label", "-peak_score"], name="event_ranking")]

    def __str__(self) -> str:
        return f"{self.label_id} {self.start_s:.1f}-{self.end_s:.1f} s of recording {self.recording_id}"

    # Listed where detections are (the run page): an event shows, plays and is labeled as its peak window.
    @property
    def window(self) -> Window:
        return self.peak_window

    @property
    def score(self) -> float:
        return self.peak_score


class DensityStratum(models.Model):
    """How a run's windows of one local day fall in its classifier's score bins, per label:
    with the bins' validated precision, the day's call density (annotations.call_density)."""

    run = models.ForeignKey(InferenceRun, on_delete=models.CASCADE, related_name="density_strata")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="+")
    day = models.DateField(null=True)  # local, in the deployment's time zone; null: start unknown
    window_counts = ArrayField(models.BigIntegerField())  # [call_density.BINS]

    class Meta:
        ordering = ["label_id", "day"]

    def __str__(self) -> str:
        return f"{self.label_id} on {self.day}: {sum(self.window_counts)} windows"


class DetectionCount(models.Model):
    """A run's detections of one label in one local hour of one local day (both null where
    the recording's start is unknown), counted by the worker: the run page's rates
    (annotations.detection_rates) read these instead of the detections."""

    run = models.ForeignKey(InferenceRun, on_delete=models.CASCADE, related_name="detection_counts")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="+")
    day = models.DateField(null=True)  # in the deployment's time zone
    hour = models.PositiveSmallIntegerField(null=True)
    detections = models.PositiveIntegerField()

    class Meta:
        ordering = ["label_id", "day", "hour"]

    def __str__(self) -> str:
        return f"{self.detections} of {self.label_id} on {self.day} at {self.hour} h"


class SunDetectionCount(models.Model):
    """A run's detections of one label starting in one quarter hour relative to the day's
    sunrise or sunset at its deployment (``offset_min``: the quarter's start, minutes from
    the event), counted by the worker (annotations.detection_rates)."""

    run = models.ForeignKey(InferenceRun, on_delete=models.CASCADE, related_name="sun_counts")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=8)  # annotations.sun.SUN_EVENTS
    offset_min = models.SmallIntegerField()
    detections = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.detections} of {self.label_id} at {self.event} {self.offset_min:+d} min"


class Combine(models.TextChoices):
    MEAN = "mean", "Mean embedding"
    BEST = "best", "Best match"


class LabeledFilter(models.TextChoices):
    ANY = "any", "Labeled or not"
    UNLABELED = "unlabeled", "Not labeled for the label"
    LABELED = "labeled", "Labeled for the label"


class SearchRecord(models.Model):
    """One query by example as an annotator ran it: the history they can return to."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="search_records")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    positive_windows = ArrayField(models.BigIntegerField(), default=list, blank=True)
    negative_windows = ArrayField(models.BigIntegerField(), default=list, blank=True)
    positive_clips = ArrayField(models.BigIntegerField(), default=list, blank=True)
    combine = models.CharField(max_length=8, choices=Combine.choices, default=Combine.MEAN)
    # Filters; empty or null means no filter.
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    site = models.CharField(max_length=200, blank=True)
    date_from = models.DateField(null=True, blank=True)
    date_to = models.DateField(null=True, blank=True)
    # Local time of day in hours since midnight (5.5 is 05:30), [from, to).
    hour_from = models.FloatField(null=True, blank=True)
    hour_to = models.FloatField(null=True, blank=True)
    predicted_class = models.CharField(max_length=200, blank=True)  # among the model's top predictions
    label = models.ForeignKey(Label, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    labeled = models.CharField(max_length=16, choices=LabeledFilter.choices, default=LabeledFilter.ANY)
    one_per_recording = models.BooleanField(default=False)
    all_overlapping = models.BooleanField(default=False)
    # Minutes from sunrise or sunset, [from, to) (annotations.sun).
    sun_event = models.CharField(max_length=8, blank=True)
    sun_from_min = models.FloatField(null=True, blank=True)
    sun_to_min = models.FloatField(null=True, blank=True)
    # The ranked results as first seen (window ids, scores); null until the search first runs.
    embedding_model = models.ForeignKey(EmbeddingModel, on_delete=models.CASCADE, null=True, related_name="+")
    result_window_ids = ArrayField(models.BigIntegerField(), null=True)
    result_scores = ArrayField(models.FloatField(), null=True)
    result_count = models.PositiveIntegerField(default=0)
    # How the results were found (annotations.search.SearchPath), and whether the index's
    # answer failed its check and another path answered (annotations.search.safety_net).
    result_path = models.CharField(max_length=16, blank=True, default="")
    result_rescued = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"search {self.pk} by {self.user_id}"


class UploadSession(models.Model):
    """A resumable browser upload of one file, written to disk chunk by chunk.

    ``received_bytes`` is the length of the partial file on disk, so an interrupted
    upload continues from there. Once complete, the file becomes ``recording``.
    """

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="upload_sessions")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    filename = models.CharField(max_length=300)
    size_bytes = models.BigIntegerField()
    received_bytes = models.BigIntegerField(default=0)
    partial_path = models.CharField(max_length=1000)
    recording = models.OneToOneField(Recording, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.filename} ({self.received_bytes}/{self.size_bytes} bytes)"


class HopliteImport(models.Model):
    """A perch-hoplite database brought into a project by a worker (annotations.hoplite_exchange).

    Each of its deployments is written in one transaction, which also adds it to
    ``done_deployments``: a retried task goes on from there, and no deployment is ever
    half there.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="hoplite_imports")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    source_name = models.CharField(max_length=300)  # the upload's file name or the server folder, as shown
    database_folder = models.CharField(max_length=1000)  # holds hoplite.sqlite and usearch.index
    uploaded = models.BooleanField(default=False)  # database_folder is ours, deleted once imported
    audio_folder = models.CharField(max_length=1000, blank=True)  # recordings are looked for here
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED)
    error = models.TextField(blank=True)
    embedding_model = models.ForeignKey(EmbeddingModel, on_delete=models.PROTECT, null=True, related_name="+")
    deployments_total = models.PositiveIntegerField(default=0)
    windows_total = models.PositiveBigIntegerField(default=0)
    windows_done = models.PositiveBigIntegerField(default=0)
    done_deployments = ArrayField(models.BigIntegerField(), default=list, blank=True)  # hoplite deployment ids
    annotations_written = models.PositiveIntegerField(default=0)
    recordings_without_audio = models.PositiveIntegerField(default=0)
    labels_added = ArrayField(models.CharField(max_length=100), default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"hoplite import of {self.source_name} ({self.status})"


class HopliteExport(models.Model):
    """A project, or one deployment, written by a worker as a zipped hoplite database."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="hoplite_exports")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    embedding_model = models.ForeignKey(EmbeddingModel, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED)
    error = models.TextField(blank=True)
    windows_total = models.PositiveBigIntegerField(default=0)
    windows_done = models.PositiveBigIntegerField(default=0)
    path = models.CharField(max_length=1000, blank=True)  # the finished zip
    size_bytes = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"hoplite export {self.pk} of {self.project_id} ({self.status})"


class EmbeddingMap(models.Model):
    """A picture of a project's embedding space for one model: a bounded sample of its
    windows projected onto a plane by a worker (``annotations.embedding_map``)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="embedding_maps")
    model = models.ForeignKey(EmbeddingModel, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED)
    error = models.TextField(blank=True)
    progress = models.FloatField(default=0.0)  # 0..1 while a build runs
    windows_total = models.BigIntegerField(default=0)  # the project's windows when it was drawn
    # "umap" (over the leading principal axes) or "pca" (the two leading axes, few windows)
    method = models.CharField(max_length=8, blank=True)
    explained_variance = models.FloatField(null=True)  # the share of the variance those axes hold
    build_started_at = models.DateTimeField(null=True)
    build_seconds = models.FloatField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "model"], name="one_embedding_map_per_model")]

    def __str__(self) -> str:
        return f"embedding map of {self.project_id} for model {self.model_id}"


class MapPoint(models.Model):
    """A window's place on an embedding map. Windows are deleted in bulk (a deployment, a
    recording embedded again) without touching maps: no constraint, and readers join."""

    map = models.ForeignKey(EmbeddingMap, on_delete=models.CASCADE, related_name="points")
    window = models.ForeignKey(
        Window, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    x = models.FloatField()
    y = models.FloatField()

    def __str__(self) -> str:
        return f"window {self.window_id} at ({self.x:.3f}, {self.y:.3f})"
