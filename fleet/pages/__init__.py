"""Web pages of the controller: the open fleet dashboard and the owners' pages (docs/pages.md)."""
