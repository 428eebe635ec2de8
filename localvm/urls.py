"""Routes of the localvm app (API under api/, pages at the root)."""

urlpatterns = []
