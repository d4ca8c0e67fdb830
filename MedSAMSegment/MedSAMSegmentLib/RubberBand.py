"""The rubber-band rectangle drawn in a slice view while a box is dragged, one per view."""
import vtk


class BoxPipeline:
    """The rubber-band rectangle drawn while a box is dragged (display XY coordinates of a slice view)."""

    def __init__(self):
        self.points = vtk.vtkPoints()
        self.points.SetNumberOfPoints(4)
        lines = vtk.vtkCellArray()
        lines.InsertNextCell(5, [0, 1, 2, 3, 0])
        self.polyData = vtk.vtkPolyData()
        self.polyData.SetPoints(self.points)
        self.polyData.SetLines(lines)
        mapper = vtk.vtkPolyDataMapper2D()
        mapper.SetInputData(self.polyData)
        self.actor = vtk.vtkActor2D()
        self.actor.SetMapper(mapper)
        self.actor.GetProperty().SetColor(1.0, 0.85, 0.1)
        self.actor.GetProperty().SetLineWidth(2)
        self.actor.VisibilityOff()
        self.view = None

    def show(self, xy0, xy1):
        for n, (x, y) in enumerate(((xy0[0], xy0[1]), (xy1[0], xy0[1]), (xy1[0], xy1[1]), (xy0[0], xy1[1]))):
            self.points.SetPoint(n, x, y, 0.0)
        self.points.Modified()
        self.actor.VisibilityOn()
        if self.view is not None:
            self.view.sliceView().scheduleRender()

    def hide(self):
        self.actor.VisibilityOff()
        if self.view is not None:
            self.view.sliceView().scheduleRender()


class BoxPipelines(dict):
    """viewWidget -> BoxPipeline, each added to its view as the effect's 2D actor on first use."""

    def __init__(self, scriptedEffect):
        super().__init__()
        self.scriptedEffect = scriptedEffect

    def of(self, viewWidget):
        if viewWidget not in self:
            pipeline = BoxPipeline()
            self.scriptedEffect.addActor2D(viewWidget, pipeline.actor)
            self[viewWidget] = pipeline
        pipeline = self[viewWidget]
        pipeline.view = viewWidget
        return pipeline

    def drop(self):
        """Remove every rubber band from its view (the views are rebuilt on a layout change)."""
        for viewWidget, pipeline in self.items():
            self.scriptedEffect.removeActor2D(viewWidget, pipeline.actor)
        self.clear()
