"""Query-string filters of the list endpoints: GET /api/envs?state=&owner=&expires_before=, GET /api/hosts?state=&drain=."""

import django_filters

from .choices import EnvState, HostState
from .models import Environment, Host


class EnvironmentFilterSet(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=EnvState.choices)
    owner = django_filters.CharFilter()
    expires_before = django_filters.IsoDateTimeFilter(field_name="expires_at", lookup_expr="lte")

    class Meta:
        model = Environment
        fields = ["state", "owner"]


class HostFilterSet(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=HostState.choices)

    class Meta:
        model = Host
        fields = ["state", "drain"]
