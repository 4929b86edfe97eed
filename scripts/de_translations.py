# ruff: noqa: E501 -- translations are data: one entry per line reads best
"""German translations, kept as data: `make translations-de` writes them into the .po files.

Written for learners and authors who use the formal "Sie"; "Lab" stays "Lab" (the usual word in
German course material), a learner's "progress check" is a "Fortschrittsprüfung".
"""

DE = {
    # admin
    "state": "Zustand",
    "Up": "Läuft",
    "Launching": "Wird gestartet",
    "Suspended": "Pausiert",
    "Failed": "Fehlgeschlagen",
    "Deleted": "Gelöscht",
    (
        "Skipped (busy, or not possible in its state): %(names)s",
        "Skipped (busy, or not possible in their state): %(names)s",
    ): (
        "Übersprungen (beschäftigt oder in seinem Zustand nicht möglich): %(names)s",
        "Übersprungen (beschäftigt oder in ihrem Zustand nicht möglich): %(names)s",
    ),
    "Suspend the selected labs": "Ausgewählte Labs pausieren",
    "Suspending": "Wird pausiert",
    "Resume the selected labs": "Ausgewählte Labs fortsetzen",
    "Resuming": "Wird fortgesetzt",
    "Delete the selected labs on their provider": "Ausgewählte Labs bei ihrem Anbieter löschen",
    "Deleting": "Wird gelöscht",
    "learner": "Lernende(r)",
    "last activity": "letzte Aktivität",
    "usage": "Nutzung",
    # Studio
    "Text": "Text",
    "Video": "Video",
    "PDF": "PDF",
    "Markdown": "Markdown",
    "Labs do not run in Studio. Preview the unit in the LMS to try the lab.": "In Studio laufen keine Labs. Öffnen Sie die Lerneinheit in der LMS-Vorschau, um das Lab auszuprobieren.",
    "Display name": "Anzeigename",
    "Lab": "Lab",
    "Title of the lab unit": "Titel der Lab-Einheit",
    "Weight": "Gewichtung",
    "Weight of this lab in grading (the score is the share of tests passed)": "Gewichtung dieses Labs in der Bewertung (die Punktzahl ist der Anteil bestandener Tests)",
    "Lab user name": "Benutzername im Lab",
    "User name to log in to the lab as": "Benutzername, mit dem man sich im Lab anmeldet",
    "Protocol": "Protokoll",
    "How the learner reaches the lab": "Wie Lernende das Lab erreichen",
    "Template path": "Vorlagenpfad",
    "Template file in the course's files (Files & Uploads)": "Vorlagendatei in den Dateien des Kurses (Dateien & Uploads)",
    "Launch timeout": "Startzeitlimit",
    "Seconds a launch may take (empty: the platform's setting)": "Sekunden, die ein Start dauern darf (leer: Einstellung der Plattform)",
    "Suspend timeout": "Pausierzeitlimit",
    "Idle seconds before the lab is suspended (empty: the platform's setting)": "Sekunden ohne Aktivität, bis das Lab pausiert wird (leer: Einstellung der Plattform)",
    "Key type": "Schlüsseltyp",
    "Key pair the worker makes for the lab ('' if the template makes its own)": "Schlüsselpaar, das der Worker für das Lab erzeugt ('' wenn die Vorlage ein eigenes erzeugt)",
    "Delete age": "Löschalter",
    "Seconds a suspended lab is kept before deletion (empty: the platform's setting)": "Sekunden, die ein pausiertes Lab bis zum Löschen aufbewahrt wird (leer: Einstellung der Plattform)",
    "Read-only": "Nur lesen",
    "Show the lab without accepting input": "Das Lab anzeigen, ohne Eingaben anzunehmen",
    "Hidden": "Verborgen",
    "Launch the lab in the background without showing it": "Das Lab im Hintergrund starten, ohne es anzuzeigen",
    "Ports": "Ports",
    "YAML list of ports the learner may choose, e.g. - {name: Desktop, number: 5901}": "YAML-Liste der Ports, die Lernende wählen können, z. B. - {name: Desktop, number: 5901}",
    "Providers": "Anbieter",
    "YAML list, in order: - {name: NAME, capacity: N, template: PATH, environment: PATH}": "YAML-Liste, in dieser Reihenfolge: - {name: NAME, capacity: N, template: PFAD, environment: PFAD}",
    "Tests": "Tests",
    "YAML list of scripts run on the lab by Check Progress; exit 0 passes, standard error is the hint": "YAML-Liste der Skripte, die „Fortschritt prüfen“ im Lab ausführt; Exit-Code 0 besteht, "
    "die Standardfehlerausgabe ist der Hinweis",
    "Hook script": "Hook-Skript",
    "Script in the course's files run on the lab with the event as argument": "Skript in den Dateien des Kurses, das im Lab mit dem Ereignis als Argument ausgeführt wird",
    "Hook events": "Hook-Ereignisse",
    "YAML mapping of events the hook runs on, e.g. {suspend: true, resume: true, delete: false}": "YAML-Zuordnung der Ereignisse, bei denen der Hook läuft, z. B. {suspend: true, resume: true, delete: false}",
    "Check button label": "Beschriftung der Prüfschaltfläche",
    "Check Progress": "Fortschritt prüfen",
    "Show feedback": "Rückmeldung anzeigen",
    "Tell the learner how many tasks they completed": "Lernenden mitteilen, wie viele Aufgaben sie erledigt haben",
    "Show hints": "Hinweise anzeigen",
    "Show the failing tests' hints": "Die Hinweise der nicht bestandenen Tests anzeigen",
    "Result heading": "Überschrift des Ergebnisses",
    "Progress check result": "Ergebnis der Fortschrittsprüfung",
    "Full screen": "Vollbild",
    "Offer a full-window view of the lab ('inherit' follows the platform's setting)": "Eine Vollbildansicht des Labs anbieten ('inherit' folgt der Einstellung der Plattform)",
    "Port the learner selected": "Von Lernenden gewählter Port",
    "The learner's latest progress check": "Die letzte Fortschrittsprüfung der Lernenden",
    "Raw score of the latest check: earned, possible": "Rohpunktzahl der letzten Prüfung: erreicht, möglich",
    # progress checks
    "This lab has no progress checks.": "Dieses Lab hat keine Fortschrittsprüfungen.",
    "Your lab is not running. Wait until it is ready, then check again.": "Ihr Lab läuft nicht. Warten Sie, bis es bereit ist, und prüfen Sie dann erneut.",
    "Another progress check is running in your lab. Please wait for it to finish.": "In Ihrem Lab läuft bereits eine Fortschrittsprüfung. Bitte warten Sie, bis sie abgeschlossen ist.",
    ("You completed %(passed)d of %(total)d task.", "You completed %(passed)d of %(total)d tasks."): (
        "Sie haben %(passed)d von %(total)d Aufgabe erledigt.",
        "Sie haben %(passed)d von %(total)d Aufgaben erledigt.",
    ),
    "Your progress has been checked.": "Ihr Fortschritt wurde geprüft.",
    "Your progress could not be checked. Please try again in a minute.": "Ihr Fortschritt konnte nicht geprüft werden. Bitte versuchen Sie es in einer Minute erneut.",
    "The progress check did not finish in time. Please try again.": "Die Fortschrittsprüfung wurde nicht rechtzeitig fertig. Bitte versuchen Sie es erneut.",
    "Your lab could not be reached to check your progress. Please try again.": "Ihr Lab war für die Fortschrittsprüfung nicht erreichbar. Bitte versuchen Sie es erneut.",
    "This task could not be checked: its test did not finish within %(seconds)d seconds.": "Diese Aufgabe konnte nicht geprüft werden: Ihr Test wurde nicht innerhalb von %(seconds)d Sekunden fertig.",
    # launch phases and states
    "Waiting for a worker…": "Warten auf einen Worker …",
    "Starting your lab…": "Ihr Lab wird gestartet …",
    "Your lab is booting…": "Ihr Lab fährt hoch …",
    "Connecting to your lab…": "Verbindung zu Ihrem Lab wird hergestellt …",
    "Preparing your lab…": "Ihr Lab wird vorbereitet …",
    "Your lab is ready.": "Ihr Lab ist bereit.",
    "You have used all of your lab time (%(hours).1f hours).": "Sie haben Ihre gesamte Lab-Zeit aufgebraucht (%(hours).1f Stunden).",
    "The lab gateway is not configured.": "Das Lab-Gateway ist nicht eingerichtet.",
    "Your lab is not running.": "Ihr Lab läuft nicht.",
    "Your lab could not be started. Please try again in a minute.": "Ihr Lab konnte nicht gestartet werden. Bitte versuchen Sie es in einer Minute erneut.",
    "No lab environment is available right now. Please try again later.": "Zurzeit ist keine Lab-Umgebung verfügbar. Bitte versuchen Sie es später erneut.",
    "Your lab took too long to start. Please try again.": "Der Start Ihres Labs hat zu lange gedauert. Bitte versuchen Sie es erneut.",
    "Your lab could not be started because of an internal error.": "Ihr Lab konnte wegen eines internen Fehlers nicht gestartet werden.",
    "Lab template problem: %(detail)s": "Problem mit der Lab-Vorlage: %(detail)s",
    "Lab template problem: the lab has no template configured.": "Problem mit der Lab-Vorlage: Für das Lab ist keine Vorlage eingerichtet.",
    "Lab template problem: the lab reported no private key.": "Problem mit der Lab-Vorlage: Das Lab hat keinen privaten Schlüssel gemeldet.",
    "Lab configuration problem: unknown stack_key_type %(key_type)s.": "Problem mit der Lab-Konfiguration: unbekannter stack_key_type %(key_type)s.",
    "Your lab could not be created: %(detail)s": "Ihr Lab konnte nicht erstellt werden: %(detail)s",
    "Your lab could not be resumed: %(detail)s": "Ihr Lab konnte nicht fortgesetzt werden: %(detail)s",
    "The lab started but reported no address.": "Das Lab wurde gestartet, hat aber keine Adresse gemeldet.",
    "The lab's identity could not be verified.": "Die Identität des Labs konnte nicht bestätigt werden.",
    "%(detail)s": "%(detail)s",
    # templates
    "Lab settings": "Lab-Einstellungen",
    "Learners cannot use this lab until these settings are fixed:": "Lernende können dieses Lab erst nutzen, wenn diese Einstellungen korrigiert sind:",
    "Lab instructions": "Anleitung zum Lab",
    "Instructions": "Anleitung",
    "This lab has no instructions yet. Click View to add them.": "Dieses Lab hat noch keine Anleitung. Klicken Sie auf „Ansehen“, um sie hinzuzufügen.",
    "Add the lab's instructions below: %(supported_types)s. Learners see them beside the lab.": "Fügen Sie unten die Anleitung zum Lab hinzu: %(supported_types)s. Lernende sehen sie neben dem Lab.",
    "Lab terminal": "Lab-Terminal",
    "read-only": "nur lesen",
    "Connect to": "Verbinden mit",
    "Lab (default)": "Lab (Standard)",
    "Reset lab": "Lab zurücksetzen",
    "Lab start-up progress": "Startfortschritt des Labs",
    "Launching your lab…": "Ihr Lab wird gestartet …",
    "Resume": "Fortsetzen",
    "Retry": "Erneut versuchen",
    "Reconnect": "Neu verbinden",
    # JavaScript
    "The request failed.": "Die Anfrage ist fehlgeschlagen.",
    "Exit full screen": "Vollbild beenden",
    "Something went wrong with your lab.": "Mit Ihrem Lab ist etwas schiefgegangen.",
    "The session ended.": "Die Sitzung wurde beendet.",
    "Your lab is paused.": "Ihr Lab ist pausiert.",
    "This deletes your lab and everything in it and starts a new one. Continue?": "Damit werden Ihr Lab und alles darin gelöscht, und ein neues wird gestartet. Fortfahren?",
    "Full screen mode is not available.": "Der Vollbildmodus ist nicht verfügbar.",
    "Could not reach the server.": "Der Server war nicht erreichbar.",
    "Could not switch to that port.": "Der Wechsel zu diesem Port war nicht möglich.",
    "Checking your progress…": "Ihr Fortschritt wird geprüft …",
    "Your progress could not be checked.": "Ihr Fortschritt konnte nicht geprüft werden.",
    "Resetting your lab…": "Ihr Lab wird zurückgesetzt …",
    "Could not check on your lab. Retrying…": "Der Zustand Ihres Labs ließ sich nicht abfragen. Neuer Versuch …",
    "Your lab could not be started.": "Ihr Lab konnte nicht gestartet werden.",
    "Reconnecting to your lab…": "Verbindung zu Ihrem Lab wird wiederhergestellt …",
    "Could not connect to your lab.": "Keine Verbindung zu Ihrem Lab möglich.",
    "The connection to your lab was lost.": "Die Verbindung zu Ihrem Lab wurde unterbrochen.",
    ("Connection lost. Reconnecting in %(seconds)s second…", "Connection lost. Reconnecting in %(seconds)s seconds…"): (
        "Verbindung unterbrochen. Neuer Verbindungsversuch in %(seconds)s Sekunde …",
        "Verbindung unterbrochen. Neuer Verbindungsversuch in %(seconds)s Sekunden …",
    ),
    "The terminal could not be loaded. Please reload the page.": "Das Terminal konnte nicht geladen werden. Bitte laden Sie die Seite neu.",
    # admin (added after the last extraction)
    "message": "Meldung",
    # switching from the original hastexo XBlock
    "Points this lab is worth: a learner earns the share of tests passed (a lab without tests is not graded)": "Punkte, die dieses Lab wert ist: Lernende erhalten davon den Anteil der bestandenen Tests (ein Lab ohne Tests wird nicht bewertet)",
    "Provider (deprecated)": "Anbieter (veraltet)",
    "The original's single provider name; used only when Providers is empty": "Der einzelne Anbietername des ursprünglichen XBlocks; wird nur verwendet, wenn „Anbieter“ leer ist",
    "OLX attributes kept as they came": "OLX-Attribute, unverändert aufbewahrt",
    "provider %(name)s is not configured here": "Anbieter %(name)s ist hier nicht eingerichtet",
    "This lab cannot start: %(problem)s.": "Dieses Lab kann nicht starten: %(problem)s.",
    "Your last progress check was still running when this course's lab software was upgraded, and its result was lost. Please check your progress again.": "Ihre letzte Fortschrittsprüfung lief noch, als die Lab-Software dieses Kurses aktualisiert wurde, und ihr Ergebnis ist verloren gegangen. Bitte prüfen Sie Ihren Fortschritt erneut.",
    "Your lab could not be created. Please try again later; if it keeps failing, tell your course staff.": (
        "Ihr Lab konnte nicht erstellt werden. Bitte versuchen Sie es später erneut; "
        "wenn es weiterhin fehlschlägt, wenden Sie sich an Ihr Kursteam."
    ),
    "Your lab could not be resumed. Please try again.": (
        "Ihr Lab konnte nicht fortgesetzt werden. Bitte versuchen Sie es erneut."
    ),
    "Lab template problem: the lab environment refused the lab's template. Your course staff can see why.": (
        "Problem mit der Lab-Vorlage: Die Lab-Umgebung hat die Vorlage des Labs abgelehnt. "
        "Ihr Kursteam kann den Grund einsehen."
    ),
    "The lab environment reported a problem. Please try again later.": (
        "Die Lab-Umgebung hat ein Problem gemeldet. Bitte versuchen Sie es später erneut."
    ),
    "The lab environment is not available right now. Please try again later.": (
        "Die Lab-Umgebung ist zurzeit nicht verfügbar. Bitte versuchen Sie es später erneut."
    ),
    "Your lab could not be paused; it will be tried again.": (
        "Ihr Lab konnte nicht pausiert werden; es wird erneut versucht."
    ),
    "Your lab could not be removed; it will be tried again.": (
        "Ihr Lab konnte nicht entfernt werden; es wird erneut versucht."
    ),
}
