"""Bringing a collaborator in with a one-time link: an account created on the way, the
role given, nothing reusable left behind. Real PostgreSQL, Django's test client."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.utils import timezone

from annotations.deployments import create_project
from annotations.models import InvitationLink, Membership, Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def survey(make_user, client_for):
    admin = make_user("lead")
    project = create_project(admin, "Wetland survey", labels=["bittern"])
    return project, client_for(admin)


def new_link(api, project, **data) -> dict:
    response = api.post(f"/api/projects/{project.pk}/invitation-links/", data, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def path_of(url: str) -> str:
    return url[url.index("/join/") :]


def test_a_newcomer_creates_an_account_and_joins_in_the_role_of_the_link(survey):
    project, api = survey
    link = new_link(api, project, role="viewer")
    assert link["url"].startswith("http://testserver/join/") and link["role"] == "viewer"
    # The address is shown once: the list and the database hold no way back to it.
    listed = api.get(f"/api/projects/{project.pk}/invitation-links/").json()
    assert [entry["id"] for entry in listed] == [link["id"]] and "url" not in listed[0]
    token = link["url"].rstrip("/").rsplit("/", 1)[1]
    assert token not in InvitationLink.objects.get().token_sha256

    newcomer = Client()
    page = newcomer.get(path_of(link["url"]))
    assert page.status_code == 200 and "Join Wetland survey" in page.content.decode()
    assert "viewers read everything and change nothing" in page.content.decode()
    refused = [
        ({"username": "ana", "password": "reed-bed-at-dawn", "password_again": "reed-bed-at-dusk"}, "differ"),
        ({"username": "ana", "password": "12345678", "password_again": "12345678"}, "too common"),
        ({"username": "lead", "password": "reed-bed-at-dawn", "password_again": "reed-bed-at-dawn"}, "is taken"),
        ({"username": "a b", "password": "reed-bed-at-dawn", "password_again": "reed-bed-at-dawn"}, "valid username"),
    ]
    for form, reason in refused:
        answer = newcomer.post(path_of(link["url"]), form)
        assert answer.status_code == 400 and reason in answer.content.decode(), reason
    assert not get_user_model().objects.filter(username="ana").exists()

    joined = newcomer.post(
        path_of(link["url"]), {"username": "ana", "password": "reed-bed-at-dawn", "password_again": "reed-bed-at-dawn"}
    )
    assert joined.status_code == 302 and joined.url == f"/projects/{project.pk}/"
    ana = get_user_model().objects.get(username="ana")
    assert Membership.objects.get(project=project, user=ana).role == Role.VIEWER
    assert "Welcome to Wetland survey: you joined as viewer." in newcomer.get(joined.url).content.decode()
    # One person per link: the next one to open it is told so, and nothing is created.
    again = Client().post(
        path_of(link["url"]), {"username": "bo", "password": "reed-bed-at-dawn", "password_again": "reed-bed-at-dawn"}
    )
    assert again.status_code == 410 and "already used" in again.content.decode()
    assert not get_user_model().objects.filter(username="bo").exists()
    assert api.get(f"/api/projects/{project.pk}/invitation-links/").json() == []


def test_someone_with_an_account_joins_once_and_a_member_keeps_the_link_unused(survey, make_user):
    project, api = survey
    link = new_link(api, project, role="annotator")
    lead = Client()
    lead.force_login(get_user_model().objects.get(username="lead"))
    refused = lead.post(path_of(link["url"]), {"join": "1"})
    assert refused.status_code == 400 and "already a member" in refused.content.decode()
    colleague = Client()
    colleague.force_login(make_user("colleague"))
    assert "Join as colleague" in colleague.get(path_of(link["url"])).content.decode()
    assert colleague.post(path_of(link["url"]), {"join": "1"}).status_code == 302
    assert Membership.objects.get(project=project, user__username="colleague").role == Role.ANNOTATOR
    assert InvitationLink.objects.get().used_by.username == "colleague"


def test_expired_withdrawn_and_unknown_links_say_why(survey):
    project, api = survey
    expired, withdrawn = new_link(api, project), new_link(api, project)
    InvitationLink.objects.filter(pk=expired["id"]).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    assert api.delete(f"/api/projects/{project.pk}/invitation-links/{withdrawn['id']}/").status_code == 204
    for url, reason in (
        (path_of(expired["url"]), "expired on"),
        (path_of(withdrawn["url"]), "not valid"),
        ("/join/not-a-token/", "not valid"),
    ):
        answer = Client().get(url)
        assert answer.status_code == 410 and reason in answer.content.decode(), url
        assert answer["Cache-Control"].startswith("max-age=0")


def test_only_admins_make_links_and_a_bad_request_says_what_is_wrong(survey, make_user, client_for):
    project, api = survey
    annotator = make_user("helper")
    Membership.objects.create(project=project, user=annotator, role=Role.ANNOTATOR)
    as_annotator = client_for(annotator)
    assert as_annotator.post(f"/api/projects/{project.pk}/invitation-links/", {}, format="json").status_code == 403
    assert as_annotator.get(f"/api/projects/{project.pk}/invitation-links/").status_code == 403
    for data, field in (({"role": "owner"}, "role"), ({"valid_days": 90}, "valid_days"), ({"email": "x"}, "email")):
        answer = api.post(f"/api/projects/{project.pk}/invitation-links/", data, format="json")
        assert answer.status_code == 400 and field in answer.json()["error"], data
    assert not InvitationLink.objects.exists()


def test_the_link_is_mailed_where_mail_works_and_still_given_where_it_does_not(survey, settings):
    project, api = survey
    sent = new_link(api, project, email="ana@example.org")
    assert sent["mail_sent"] and sent["mail_error"] == ""
    assert mail.outbox[0].to == ["ana@example.org"] and sent["url"] in mail.outbox[0].body
    # No mail server listening: the link is made all the same, and the answer says why no mail went.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9
    unsent = new_link(api, project, email="bo@example.org")
    assert not unsent["mail_sent"] and "could not be sent" in unsent["mail_error"]
    assert Client().get(path_of(unsent["url"])).status_code == 200
