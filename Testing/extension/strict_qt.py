"""Strict stand-ins for the Qt and CTK classes the GUI files use (no real Qt is loaded in the tests).

Held to the real API (slicer_api.py, generated from Qt 5.15 metadata and the CTK/Slicer headers):

- reading or writing a name the real class does not have raises AttributeError, as PythonQt would;
  writing a read-only property raises too;
- ``connect("signal(args)", slot)`` with a signature the class does not emit raises ValueError;
- a name that exists in the real API but that a stand-in does not model raises NotImplementedError
  naming it (a visible gap, never a silent pass);
- a stand-in cannot define a public method or property the real class lacks: class creation fails.

Like PythonQt, a Qt property shadows the getter of the same name (``label.text`` is the string).
Behaviour modelled is what the tests assert on: values, items, checked state, signal emission when a
user acts (``_user*`` helpers), layout children, timers (fired by ``processEvents``), override cursor.
"""
from __future__ import annotations

import time
import types

import slicer_api

# PythonQt gives every wrapped object these, whatever its class (PythonQt's instance wrapper).
PYTHONQT_BUILTINS = {"className", "delete", "help", "inherits"}


def normalize_signal(sig: str) -> str:
    return sig.replace(" ", "").replace("const", "").replace("&", "")


class StandIn:
    """Base of every strict stand-in. ``API`` names the real class in the API lists."""

    API = "QObject"
    DEFAULTS: dict = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.__name__.startswith("_"):
            return  # a shared helper: checked in each concrete stand-in that uses it
        api = slicer_api.members(cls.API)
        own = {}
        for klass in reversed(cls.__mro__):
            if issubclass(klass, StandIn) and klass is not StandIn:
                own.update(vars(klass))
        for name, value in own.items():
            if name.startswith("_") or name in ("API", "DEFAULTS") or name in PYTHONQT_BUILTINS:
                continue
            if not api.has(name):
                raise TypeError(f"stand-in {cls.__name__} defines {name!r}, which {cls.API} does not have")
            if isinstance(value, property) and value.fset is not None and not api.properties.get(name, False):
                raise TypeError(f"stand-in {cls.__name__} makes {name!r} writable; in {cls.API} it is not")
        for name in {k for klass in cls.__mro__ for k in getattr(klass, "DEFAULTS", {})}:
            if name not in api.properties:
                raise TypeError(f"stand-in {cls.__name__} default for {name!r}: not a property of {cls.API}")

    def __init__(self, *args):
        object.__setattr__(self, "_props", {})
        object.__setattr__(self, "_slots", {})
        object.__setattr__(self, "_blocked", False)
        object.__setattr__(self, "_parent", None)

    @classmethod
    def _api(cls):
        return slicer_api.members(cls.API)

    def __getattr__(self, name):  # only for names not found on the stand-in
        if name.startswith("_"):
            raise AttributeError(name)
        api = self._api()
        if name in api.properties:
            for cls in type(self).__mro__:
                if name in getattr(cls, "DEFAULTS", {}):
                    return self._props.get(name, cls.DEFAULTS[name])
            if name in self._props:
                return self._props[name]
            raise NotImplementedError(f"stand-in {type(self).__name__} does not model property {self.API}.{name}")
        if name.startswith("set") and len(name) > 3:
            prop = name[3].lower() + name[4:]
            if prop in api.properties and api.properties[prop] and name in api.callables:
                return lambda value: setattr(self, prop, value)
        if api.has(name):
            raise NotImplementedError(f"stand-in {type(self).__name__} does not model {self.API}.{name}")
        raise AttributeError(f"{self.API} has no attribute {name!r} (not in the real API)")

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        api = self._api()
        if name not in api.properties:
            raise AttributeError(f"{self.API} has no property {name!r}; setting it would do nothing in Slicer")
        if not api.properties[name]:
            raise AttributeError(f"{self.API}.{name} is read-only")
        descriptor = getattr(type(self), name, None)
        if isinstance(descriptor, property):
            descriptor.fset(self, value)
        else:
            self._props[name] = value

    # --------------------------------------------------------------------------- QObject
    def connect(self, signal, slot):
        sig = normalize_signal(signal)
        if sig not in {normalize_signal(s) for s in self._api().signals}:
            raise ValueError(f"{self.API} has no signal {signal!r}")
        self._slots.setdefault(sig, []).append(slot)
        return True

    def disconnect(self, signal, slot=None):
        sig = normalize_signal(signal)
        if slot is None:
            self._slots.pop(sig, None)
        elif slot in self._slots.get(sig, []):
            self._slots[sig].remove(slot)
        return True

    def blockSignals(self, block):
        previous = self._blocked
        self._blocked = bool(block)
        return previous

    def signalsBlocked(self):
        return self._blocked

    def _emit(self, signal, *args):
        if self._blocked:
            return
        for slot in list(self._slots.get(normalize_signal(signal), [])):
            slot(*args)

    def _connected(self, signal):
        return list(self._slots.get(normalize_signal(signal), []))


class QObject(StandIn):
    API = "QObject"
    DEFAULTS = {"objectName": ""}


class QTimer(StandIn):
    """Fired by QApplication.processEvents() while active (as the event loop would)."""

    API = "QTimer"
    DEFAULTS = {"interval": 0, "singleShot": False}
    _running: list = []

    def start(self, ms=None):
        if ms is not None:
            self.interval = ms
        self._due = time.monotonic() + self.interval / 1000  # as in Qt, start() restarts a running timer
        if self not in QTimer._running:
            QTimer._running.append(self)

    def stop(self):
        if self in QTimer._running:
            QTimer._running.remove(self)

    def isActive(self):
        return self in QTimer._running

    @property
    def active(self):
        return self in QTimer._running

    @staticmethod
    def singleShot(ms, callback):
        t = QTimer()
        t._props["singleShot"] = True
        t._callback = callback
        t.start(ms)

    def _fire(self):
        if self._props.get("singleShot"):  # (self.singleShot would be the static function)
            self.stop()
        else:
            self._due = time.monotonic() + self.interval / 1000
        if getattr(self, "_callback", None) is not None:
            self._callback()
        self._emit("timeout()")


class QIcon(StandIn):
    API = "QIcon"

    def __init__(self, path=""):
        super().__init__()
        self._path = path

    def isNull(self):
        return not self._path


class QCursor(StandIn):
    API = "QCursor"

    def __init__(self, shape=None):
        super().__init__()
        self._shape = shape

    def shape(self):
        return self._shape


class QPoint(StandIn):
    API = "QObject"  # value class (not a QObject; no metadata): only x()/y() are modelled

    def __init__(self, x=0, y=0):
        super().__init__()
        self._xy = (x, y)

    def _x(self):
        return self._xy[0]

    def _y(self):
        return self._xy[1]


class QWidget(StandIn):
    API = "QWidget"
    DEFAULTS = {"enabled": True, "visible": True, "toolTip": "", "objectName": "", "styleSheet": ""}

    def __init__(self, parent=None):
        super().__init__()
        self._layout = None

    def setToolTip(self, text):
        self.toolTip = text

    def setEnabled(self, on):
        self.enabled = bool(on)

    def setVisible(self, on):
        self.visible = bool(on)

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False

    def setLayout(self, layout):
        self._layout = layout
        layout._owner = self

    def layout(self):
        return self._layout

    def isEnabled(self):
        return self.enabled

    def isVisible(self):
        return self.visible

    def _children(self):
        return self._layout._children() if self._layout is not None else []


class QFrame(QWidget):
    API = "QFrame"


class QLabel(QFrame):
    API = "QLabel"
    DEFAULTS = {"text": "", "wordWrap": False}

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.text = text

    def setText(self, text):
        self.text = text


class QLineEdit(QWidget):
    API = "QLineEdit"
    DEFAULTS = {"text": "", "placeholderText": "", "readOnly": False}

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        if isinstance(text, str):
            self._props["text"] = text

    def setText(self, text):
        self.text = text

    def _userType(self, text):
        """The user replaces the text key by key, then presses Enter (textEdited per key, one editingFinished)."""
        for n in range(1, len(text) + 1):
            self._props["text"] = text[:n]
            self._emit("textChanged(QString)", text[:n])
            self._emit("textEdited(QString)", text[:n])
        self._emit("returnPressed()")
        self._emit("editingFinished()")


class QComboBox(QWidget):
    API = "QComboBox"
    DEFAULTS = {"editable": False}

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items = []  # [text, data]
        self._index = -1
        self._editText = ""
        self._lineEdit = None

    def addItem(self, text, userData=None):
        self._items.append([text, userData])
        if self._index < 0:
            self._setIndex(0)

    def addItems(self, texts):
        for t in texts:
            self.addItem(t)

    def clear(self):
        self._items, self._index = [], -1

    def findData(self, data):
        return next((n for n, (_, d) in enumerate(self._items) if d == data), -1)

    def findText(self, text):
        return next((n for n, (t, _) in enumerate(self._items) if t == text), -1)

    def itemText(self, n):
        return self._items[n][0]

    def itemData(self, n):
        return self._items[n][1]

    @property
    def count(self):
        return len(self._items)

    def setEditable(self, on):
        self.editable = bool(on)
        if on and self._lineEdit is None:
            self._lineEdit = QLineEdit()
            self._lineEdit._combo = self

    def lineEdit(self):
        return self._lineEdit if self.editable else None

    def _setIndex(self, n):
        changed = n != self._index
        self._index = n
        self._editText = self._items[n][0] if n >= 0 else ""
        if self._lineEdit is not None:
            self._lineEdit._props["text"] = self._editText
        if changed:
            self._emit("currentIndexChanged(int)", n)
            self._emit("currentTextChanged(QString)", self._editText)

    @property
    def currentIndex(self):
        return self._index

    @currentIndex.setter
    def currentIndex(self, n):
        self._setIndex(int(n))

    def setCurrentIndex(self, n):
        self._setIndex(int(n))

    @property
    def currentText(self):
        if self.editable and self._lineEdit is not None:
            return self._lineEdit._props.get("text", "")
        return self._editText

    @currentText.setter
    def currentText(self, text):
        n = self.findText(text)
        if n >= 0:
            self._setIndex(n)
        elif self.editable:
            self._editText = text
            self._lineEdit._props["text"] = text
            self._emit("currentTextChanged(QString)", text)

    @property
    def currentData(self):
        return self._items[self._index][1] if self._index >= 0 else None

    def _userSelect(self, text):
        self._setIndex(self.findText(text))
        self._emit("activated(int)", self._index)

    def _userType(self, text):
        """Typing into the editable combo: currentTextChanged per key, editingFinished on Enter."""
        assert self.editable
        for n in range(1, len(text) + 1):
            self._lineEdit._props["text"] = text[:n]
            self._emit("editTextChanged(QString)", text[:n])
            self._emit("currentTextChanged(QString)", text[:n])
            self._lineEdit._emit("textEdited(QString)", text[:n])
        self._lineEdit._emit("editingFinished()")


class QAbstractButton(QWidget):
    API = "QAbstractButton"
    DEFAULTS = {"text": "", "checkable": False}

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        if isinstance(text, str):
            self._props["text"] = text
        self._checked = False
        self._group = None

    @property
    def checked(self):
        return self._checked

    @checked.setter
    def checked(self, on):
        on = bool(on)
        if on == self._checked:
            return
        self._checked = on
        if on and self._group is not None:
            for other in self._group:
                if other is not self and other._checked:
                    other.checked = False
        self._emit("toggled(bool)", on)

    def setChecked(self, on):
        self.checked = on

    def isChecked(self):
        return self._checked

    def click(self):
        if not self.enabled:
            return
        if self.checkable:
            self.checked = not self._checked if self._group is None else True
        self._emit("clicked()")
        self._emit("clicked(bool)", self._checked)


class QPushButton(QAbstractButton):
    API = "QPushButton"


class QToolButton(QAbstractButton):
    API = "QToolButton"


class QCheckBox(QAbstractButton):
    API = "QCheckBox"

    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self._props["checkable"] = True


class QRadioButton(QAbstractButton):
    API = "QRadioButton"

    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self._props["checkable"] = True


class QGroupBox(QWidget):
    API = "QGroupBox"
    DEFAULTS = {"title": "", "checkable": False, "checked": True}

    def __init__(self, title="", parent=None):
        super().__init__(parent)
        if isinstance(title, str):
            self._props["title"] = title


class QProgressBar(QWidget):
    API = "QProgressBar"
    DEFAULTS = {"value": 0, "minimum": 0, "maximum": 100, "format": "%p%", "textVisible": True}

    def setRange(self, lo, hi):
        self.minimum, self.maximum = lo, hi

    def setValue(self, v):
        self.value = v

    def reset(self):
        self.value = self.minimum


class _SpinBase(QWidget):
    API = "QWidget"

    def setRange(self, lo, hi):
        self._props["minimum"], self._props["maximum"] = lo, hi

    @property
    def value(self):
        return self._props.get("value", 0)

    @value.setter
    def value(self, v):
        v = min(max(v, self._props.get("minimum", 0)), self._props.get("maximum", 99))
        if v != self._props.get("value", 0):
            self._props["value"] = v
            self._emit(self._VALUE_SIGNAL, v)

    def setValue(self, v):
        self.value = v


class QSpinBox(_SpinBase):
    API = "QSpinBox"
    DEFAULTS = {"minimum": 0, "maximum": 99, "suffix": "", "singleStep": 1}
    _VALUE_SIGNAL = "valueChanged(int)"


class QDoubleSpinBox(_SpinBase):
    API = "QDoubleSpinBox"
    DEFAULTS = {"minimum": 0.0, "maximum": 99.99, "suffix": "", "singleStep": 1.0, "decimals": 2}
    _VALUE_SIGNAL = "valueChanged(double)"


class QListWidget(QWidget):
    API = "QListWidget"

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items = []

    def addItem(self, text):
        self._items.append(text)

    def clear(self):
        self._items = []

    @property
    def count(self):
        return len(self._items)


class QLayout(StandIn):
    API = "QLayout"

    def __init__(self, parent=None):
        super().__init__()
        self._items = []
        self._owner = None
        if isinstance(parent, QWidget):
            parent.setLayout(self)

    def addWidget(self, widget, *args):
        self._items.append(widget)
        if isinstance(widget, QRadioButton):  # auto-exclusive radio buttons sharing a parent
            group = [w for w in self._items if isinstance(w, QRadioButton)]
            for w in group:
                w._group = group

    def _children(self):
        out = []
        for item in self._items:
            if isinstance(item, str):
                continue
            out.append(item)
            if isinstance(item, (QLayout, QWidget)):
                out.extend(item._children())
        return out


class QBoxLayout(QLayout):
    API = "QBoxLayout"

    def addLayout(self, layout, *args):
        self._items.append(layout)

    def addStretch(self, stretch=0):
        pass


class QHBoxLayout(QBoxLayout):
    API = "QHBoxLayout"


class QVBoxLayout(QBoxLayout):
    API = "QVBoxLayout"


class QFormLayout(QLayout):
    API = "QFormLayout"

    def addRow(self, *args):
        self._items.extend(a for a in args if not isinstance(a, str))


class QApplication(StandIn):
    """The static helpers the GUI calls; the override cursor is a stack, as in Qt."""

    API = "QApplication"
    _cursors: list = []

    @staticmethod
    def setOverrideCursor(cursor):
        QApplication._cursors.append(cursor)

    @staticmethod
    def restoreOverrideCursor():
        if QApplication._cursors:
            QApplication._cursors.pop()

    @staticmethod
    def overrideCursor():
        return QApplication._cursors[-1] if QApplication._cursors else None

    @staticmethod
    def processEvents(*args):
        for timer in list(QTimer._running):
            if timer in QTimer._running:
                timer._fire()


def run_event_loop(until, timeout, block, idle_s=0.1):
    """Qt's event loop in real time, until ``until()`` is true or ``timeout`` seconds passed.

    Between timers the loop waits inside C++ (``block(seconds)``: the test passes a call that holds the GIL
    to model Slicer, where the loop runs with the GIL held, or ``time.sleep`` for the GIL free); each timer
    fires when its interval has elapsed, as QTimer does. With no timer running the loop waits ``idle_s``
    at a time (nothing wakes it but a user or a timer). Returns the seconds it ran.
    """
    start = time.monotonic()
    while not until():
        now = time.monotonic()
        if now - start >= timeout:
            break
        due = [t for t in list(QTimer._running) if getattr(t, "_due", now) <= now]
        for timer in due:
            if timer in QTimer._running:
                timer._fire()
        if due:
            continue
        nxt = min((getattr(t, "_due", now) for t in QTimer._running), default=now + idle_s)
        block(max(0.0, min(nxt, now + idle_s, start + timeout) - now))
    return time.monotonic() - start


class _Namespace:
    """``qt.Qt``: enum values only, each a distinct int, for the enums listed in api/qt-5.15.json."""

    def __init__(self):
        self._values = {}
        for enum in ("CursorShape", "AlignmentFlag", "Orientation", "CheckState"):
            for n, name in enumerate(slicer_api.qt_enum(enum)):
                self._values[name] = (enum, n)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._values:
            raise AttributeError(f"Qt has no enum value {name!r} (in the generated list)")
        return self._values[name]


class StrictModule(types.ModuleType):
    """``qt`` / ``ctk``: a class the real module has but no stand-in models raises NotImplementedError."""

    def __init__(self, name, classes, known):
        super().__init__(name)
        self.__dict__.update(classes)
        self._known = known

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._known:
            raise NotImplementedError(f"no strict stand-in models {self.__name__}.{name}")
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------------ CTK
class ctkPathLineEdit(QWidget):
    API = "ctkPathLineEdit"
    DEFAULTS = {"filters": 0, "nameFilters": [], "settingKey": "", "showHistoryButton": True}

    Dirs = ("Filter", "Dirs")
    Files = ("Filter", "Files")

    @property
    def currentPath(self):
        return self._props.get("currentPath", "")

    @currentPath.setter
    def currentPath(self, path):
        if path != self._props.get("currentPath", ""):
            self._props["currentPath"] = path
            self._emit("currentPathChanged(QString)", path)

    def setCurrentPath(self, path):
        self.currentPath = path


class ctkCollapsibleButton(QAbstractButton):
    API = "ctkCollapsibleButton"
    DEFAULTS = {"collapsed": False, "text": ""}


def qt_module():
    classes = {c.__name__: c for c in (QObject, QTimer, QIcon, QCursor, QWidget, QFrame, QLabel, QLineEdit,
                                       QComboBox, QAbstractButton, QPushButton, QToolButton, QCheckBox,
                                       QRadioButton, QGroupBox, QProgressBar, QSpinBox, QDoubleSpinBox,
                                       QListWidget, QLayout, QBoxLayout, QHBoxLayout, QVBoxLayout, QFormLayout,
                                       QApplication)}
    classes["Qt"] = _Namespace()
    classes["QPoint"] = QPoint
    QTimer._running = []
    QApplication._cursors = []
    return StrictModule("qt", classes, set(slicer_api.qt_json()["classes"]))


def ctk_module():
    return StrictModule("ctk", {"ctkPathLineEdit": ctkPathLineEdit, "ctkCollapsibleButton": ctkCollapsibleButton},
                        {"ctkPathLineEdit", "ctkCollapsibleButton", "ctkComboBox", "ctkSliderWidget"})
