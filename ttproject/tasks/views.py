from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from ttproject.api import pagination
from ttproject.api.auth import is_operator, principal

from .models import TERMINAL, Task
from .serializers import TaskSerializer


class TaskViewSet(viewsets.ReadOnlyModelViewSet):
    """Tasks of long actions. Owners see only their own."""

    serializer_class = TaskSerializer
    lookup_value_regex = "[0-9a-fA-F-]{1,36}"

    def get_queryset(self):
        tasks = Task.objects.all()
        who = principal(self.request)
        if not is_operator(who):
            tasks = tasks.filter(owner=who.username)
        return tasks

    def get_object(self):
        return get_object_or_404(self.get_queryset(), pk=self.kwargs["pk"])

    @extend_schema(parameters=pagination.PARAMETERS, responses=pagination.paged(TaskSerializer, "Task"))
    def list(self, request, *args, **kwargs):
        if pagination.wanted(request):
            page = pagination.paginate(request, self.get_queryset(), ["-created_at", "id"])
            return pagination.page_reply(self.get_serializer(page.rows, many=True).data, page)
        tasks = self.get_queryset()[:100]
        return Response(self.get_serializer(tasks, many=True).data)

    @extend_schema(responses=TaskSerializer(many=True))
    @action(detail=False)
    def active(self, request):
        """Tasks that are not completed or failed."""
        tasks = self.get_queryset().exclude(status__in=TERMINAL).order_by("created_at")
        return Response(self.get_serializer(tasks, many=True).data)
