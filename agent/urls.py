"""Routes of the agent app (API under api/, pages at the root)."""

urlpatterns = []
