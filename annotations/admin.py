from django import forms
from django.contrib import admin

from annotations import deployments, models
from annotations.errors import InputError


class MembershipInline(admin.TabularInline):
    model = models.Membership
    extra = 1


class LabelInline(admin.TabularInline):
    model = models.Label
    extra = 1


@admin.register(models.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "created_by", "created_at"]
    inlines = [MembershipInline, LabelInline]


class FolderGrantForm(forms.ModelForm):
    class Meta:
        model = models.FolderGrant
        fields = ["project", "folder"]

    def clean_folder(self):
        try:
            return str(deployments.grantable_folder(self.cleaned_data["folder"]))
        except InputError as error:
            raise forms.ValidationError(str(error)) from error


@admin.register(models.FolderGrant)
class FolderGrantAdmin(admin.ModelAdmin):
    """Site staff decide which server folders each project may read."""

    form = FolderGrantForm
    list_display = ["folder", "project", "granted_by", "granted_at"]
    list_filter = ["project"]

    def save_model(self, request, obj, form, change):
        obj.granted_by = obj.granted_by or request.user
        obj.save()


@admin.register(models.Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "site", "latitude", "longitude"]
    list_filter = ["project"]


@admin.register(models.Recording)
class RecordingAdmin(admin.ModelAdmin):
    list_display = ["filename", "deployment", "status", "duration_s", "error"]
    list_filter = ["status", "deployment__project"]
    readonly_fields = ["embedding_model"]


@admin.register(models.EmbeddingModel)
class EmbeddingModelAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "embedding_dim", "window_s", "hop_s", "sample_rate"]


@admin.register(models.Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["window", "label", "value", "annotator", "updated_at"]
    list_filter = ["value", "label__project"]
    raw_id_fields = ["window"]


@admin.register(models.LabelChange)
class LabelChangeAdmin(admin.ModelAdmin):
    """The audit trail is read-only, here too."""

    list_display = ["changed_at", "annotator", "label", "window", "old_value", "new_value"]
    list_filter = ["label__project"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(models.Classifier)
class ClassifierAdmin(admin.ModelAdmin):
    list_display = ["project", "version", "probe_type", "status", "embedding_model", "created_at"]
    list_filter = ["project", "status"]
    exclude = ["weights", "bias"]
