"""The instant first box: when a slice view rests on a slice for a second, the worker asks the model
process to encode that slice in the background."""
import qt


class ViewPrefetch:
    """Instant first box: after a slice view rests on a slice for VIEW_DWELL_S, encode it ahead.

    The effect calls viewChanged(sliceToRas) from processViewNodeEvents (Slicer calls that on every
    change of a slice node while the effect is active); each call restarts a single-shot timer, so
    scrolling sends nothing and only the slice the user stops on is encoded (the model process keeps
    only the newest request and a bounded embedding cache).
    """

    def __init__(self, effect):
        from medsamkit.mrml.interactive import VIEW_DWELL_S

        self.effect = effect
        self.sliceToRas = None
        self.job = None
        self.timer = qt.QTimer()
        self.timer.setSingleShot(True)
        self.timer.setInterval(int(VIEW_DWELL_S * 1000))
        self.timer.connect("timeout()", self.onDwell)

    def viewChanged(self, sliceToRas):
        self.sliceToRas = sliceToRas
        self.timer.start()

    def onDwell(self):
        effect = self.effect
        if self.sliceToRas is None or effect.worker is None or effect.worker.busy:
            return  # a running prompt already has the model's attention
        try:
            self.job = self.submit(self.sliceToRas)
        except Exception:  # a prefetch is a hint: never an error for the user
            self.job = None

    def submit(self, sliceToRas):
        """Prepare the view request (main thread) and queue it on the worker; None if nothing to encode."""
        from medsamkit.mrml.interactive import prepare_view_request, run_view_request

        effect = self.effect
        volume, _, _ = effect.nodes()
        if volume is None or volume.GetImageData() is None or self.modelNotAtHand():
            return None
        session = effect.session
        request = prepare_view_request(volume, sliceToRas, effect.scriptedEffect.parameter("Window"),
                                       effect.normalizationCache, session)
        if request is None:
            return None
        options = effect.modelOptions()

        def work(progress=None, cancel=None):  # worker thread: no MRML here
            return run_view_request(session.open(progress=progress, cancel=cancel, **options), request,
                                    progress=progress, cancel=cancel)

        job = effect.worker.submit_background(work, label="view prefetch")
        effect.watchWorker()  # the worker runs only while the main thread lets it (Worker.wait)
        return job

    def modelNotAtHand(self):
        """True while the chosen catalog model is not downloaded: only a prompt asks for the download
        (with its licence), never a view at rest."""
        return self.effect.modelToDownload() is not None

    def stop(self):
        self.timer.stop()
        self.sliceToRas = None
