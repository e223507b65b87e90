from django.contrib import admin

from annotations import models


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
