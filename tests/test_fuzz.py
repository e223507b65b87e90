"""Schema-driven fuzzing of the REST API on a live test server: no input gives a 500."""

from __future__ import annotations

import json

import hypothesis
import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode

from annotations.deployments import create_deployment, create_project

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_OPERATION = 8


def test_the_openapi_schema_is_published(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert "/api/projects/{project_id}/search/" in schema["paths"]


def test_fuzzing_every_operation_finds_no_server_error(live_server, make_user, worker_queue):
    user = make_user("fuzzer")
    token = Token.objects.create(user=user)
    project = create_project(user, "Fuzz", labels=["bird"])
    create_deployment(project, "Fuzz deployment")
    rendered = OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True))
    schema = schemathesis.openapi.from_dict(json.loads(rendered))
    headers = {"Authorization": f"Token {token.key}"}
    server_errors: list[str] = []
    operations = runs = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        # Pin the project to one the fuzzer belongs to, so that bodies and queries are
        # exercised rather than stopped at the membership check.
        pinned = {"project_id": project.pk} if "{project_id}" in operation.path else None
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(operation.as_strategy(mode, path_parameters=pinned))
            def call(case):
                response = case.call(base_url=live_server.url, headers=headers)
                if response.status_code >= 500:
                    server_errors.append(f"{case.method} {response.request.url} -> {response.status_code}")

            try:
                call()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing to make invalid (e.g. an operation without parameters)
            else:
                runs += 1
    assert operations >= 30 and runs >= 50
    assert not server_errors, "\n".join(server_errors[:20])
