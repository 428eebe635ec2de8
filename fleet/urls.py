"""Routes of the fleet app (API under api/, pages at the root)."""

urlpatterns = []
