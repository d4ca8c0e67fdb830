"""The stand-ins are strict: what the real Qt/CTK/Slicer API lacks fails, and the API lists are what the
generator reads from the sources (checked on facts known from Slicer's headers)."""
from __future__ import annotations

import pytest

import slicer_api
import strict_qt


@pytest.fixture()
def qt():
    return strict_qt.qt_module()


def test_unknown_names_read_only_properties_and_signals_fail(qt):
    combo, label, button = qt.QComboBox(), qt.QLabel(), qt.QPushButton("OK")
    with pytest.raises(AttributeError, match="no attribute 'currentItemData'"):
        combo.currentItemData
    with pytest.raises(AttributeError, match="read-only"):
        combo.currentData = "x"
    with pytest.raises(AttributeError, match="no property 'wordwrap'"):
        label.wordwrap = True  # a typo would silently do nothing in Slicer
    with pytest.raises(ValueError, match="no signal"):
        button.connect("clicked(int)", print)
    assert button.connect("clicked()", print) and button.connect("toggled(bool)", print)
    with pytest.raises(NotImplementedError, match="does not model"):
        combo.showPopup  # real, but not modelled: a visible gap, never a silent pass
    with pytest.raises(AttributeError):
        qt.QNoSuchWidget


def test_a_stand_in_cannot_invent_api(qt):
    with pytest.raises(TypeError, match="defines 'frobnicate'"):
        class Bad(strict_qt.QWidget):
            API = "QWidget"

            def frobnicate(self):
                pass
    with pytest.raises(TypeError, match="makes 'count' writable"):
        class Bad2(strict_qt.QWidget):
            API = "QComboBox"
            count = property(lambda self: 0, lambda self, v: None)


def test_slicer_api_is_the_intersection_of_the_supported_versions():
    # qSlicerSegmentEditorAbstractEffect.h: cleanup() is Q_INVOKABLE in 5.10.0 only
    assert "cleanup" in slicer_api.cpp_members_in("5.10.0", "qSlicerSegmentEditorAbstractEffect").callables
    assert "cleanup" not in slicer_api.cpp_members_in("5.8.0", "qSlicerSegmentEditorAbstractEffect").callables
    assert "cleanup" not in slicer_api.members("qSlicerSegmentEditorScriptedEffect").callables
    m = slicer_api.members("qSlicerSegmentEditorScriptedEffect")
    assert {"setPythonSource", "self", "parameter", "setParameter", "parameterDefined",
            "modifySelectedSegmentByLabelmap", "addLabeledOptionsWidget"} <= m.callables
    assert m.properties["perSegment"] and "ModificationModeSet" in m.enums
    assert "currentPathChanged(QString)" in slicer_api.members("ctkPathLineEdit").signals
    assert "startupCompleted()" in slicer_api.members("qSlicerApplication").signals
    assert "layoutChanged(int)" in slicer_api.members("qSlicerLayoutManager").signals


def test_header_parser_on_a_small_header():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("generate_api", Path(__file__).parent / "api" / "generate_api.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    header = '''
    class EXPORT qFoo : public QWidget {
      Q_OBJECT
      Q_PROPERTY(QString text READ text WRITE setText)
      Q_PROPERTY(int count READ count)  // "{ not a brace }"
    public:
      enum Mode { A, B = 2 };
      Q_INVOKABLE void doIt(const QString& name, int n = 3);
      void notExposed();
      inline int count() const { return 1; }
    public slots:
      void setText(const QString& t);
    signals:
      void changed(vtkMRMLNode* node, unsigned int n);
    protected:
      Q_INVOKABLE void hidden();
    };'''
    api = gen.parse_header(header, "qFoo")
    assert api["bases"] == ["QWidget"]
    assert api["properties"] == {"text": {"writable": True}, "count": {"writable": False}}
    assert api["invokables"] == ["doIt"] and api["slots"] == ["setText(QString)"]
    assert api["signals"] == ["changed(vtkMRMLNode*,unsigned int)"] and api["enums"] == {"Mode": ["A", "B"]}
