"""Links the operations console (apiplatform.ops.urls) from the admin's index page."""

from django.contrib import admin

admin.site.index_template = "admin/ops_index.html"
