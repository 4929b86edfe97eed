"""Settings the LMS and Studio load through the plugin machinery (``apps.HastexoXBlockConfig.plugin_app``)."""
