#!/usr/bin/python3
"""The WebKitGTK browser WebKitWebDriver starts for the tests.

MiniBrowser and Epiphany give an automation session an ephemeral data store,
so nothing would survive a browser restart; this browser keeps its data under
`--profile DIR` instead. It also turns on the storage features WebKitGTK ships
disabled (Safari has them on): without them there is no OPFS.

Usage (by WebKitWebDriver, from the `webkitgtk:browserOptions` capability):
    webkit_launcher.py --profile DIR
"""
import os
import sys

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("WebKit2", "4.1")
from gi.repository import Gtk, WebKit2  # noqa: E402

NAME = "ferrydb-webkit"
FEATURES = {"StorageAPI", "StorageAPIEstimate", "FileSystem", "FileSystemWritableStream", "AccessHandle"}

profile = sys.argv[sys.argv.index("--profile") + 1]
data = WebKit2.WebsiteDataManager(
    base_data_directory=os.path.join(profile, "data"),
    base_cache_directory=os.path.join(profile, "cache"),
)
context = WebKit2.WebContext(website_data_manager=data)
context.set_automation_allowed(True)

settings = WebKit2.Settings()
features = WebKit2.Settings.get_all_features()
for i in range(features.get_length()):
    feature = features.get(i)
    if feature.get_identifier() in FEATURES:
        settings.set_feature_enabled(feature, True)
settings.set_enable_write_console_messages_to_stdout(True)

windows = set()


def create_web_view(_session):
    view = WebKit2.WebView(web_context=context, settings=settings, is_controlled_by_automation=True)
    window = Gtk.Window(default_width=1024, default_height=768)
    window.add(view)
    windows.add(window)

    def closed(_view):
        windows.discard(window)
        window.destroy()
        # The last window closed is the session's end: quit cleanly, so the
        # network process writes its storage out.
        if not windows:
            Gtk.main_quit()

    view.connect("close", closed)
    window.show_all()
    return view


def automation_started(_context, session):
    info = WebKit2.ApplicationInfo()
    info.set_name(NAME)
    info.set_version(1, 0, 0)
    session.set_application_info(info)
    session.connect("create-web-view", create_web_view)


context.connect("automation-started", automation_started)
Gtk.main()
