"""The verdict of a scan and the errors dynahug raises."""

import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Reason:
    """One named feature behind a verdict (``feature``, ``weight``,
    ``detail``), as in ``dynahug scan --format json``."""
    feature: str
    weight: float
    detail: str


@dataclasses.dataclass(frozen=True)
class ResolvedGlobal:
    """A global the sandboxed load resolved. ``stub``: its module is not
    installed for the sandbox, which resolved it to an inert stub."""
    module: str
    name: str
    stub: bool = False


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the sandboxed analysis of some bytes concluded.

    ``label`` is ``"benign"``, ``"malicious"``, ``"error"`` (inconclusive:
    ``error`` says why) or ``"skipped"`` (a format with no code-execution
    path or one dynahug does not analyse: ``skip_reason`` says which).
    ``score > threshold`` exactly when the label is malicious;
    ``ocsvm_score`` is the one-class SVM's decision alone. ``loaded``: the
    sandboxed load returned an object (else ``load_error`` says how it
    ended); ``globals``: what it resolved; ``loader``: what it ran.
    """
    label: str
    score: float = 0.0
    threshold: float = 0.0
    ocsvm_score: float = 0.0
    cluster: str = ''
    capabilities: Tuple[str, ...] = ()
    reasons: Tuple[Reason, ...] = ()
    error: str = ''
    skip_reason: str = ''
    format: str = ''
    loader: str = ''
    sha256: str = ''
    content_key: str = ''
    elapsed_ms: float = 0.0
    loaded: bool = False
    load_error: str = ''
    globals: Tuple[ResolvedGlobal, ...] = ()
    name: str = ''
    model: str = ''
    trace: Optional[dict] = dataclasses.field(default=None, compare=False,
                                              repr=False)

    @property
    def benign(self):
        return self.label == 'benign'

    @property
    def malicious(self):
        return self.label == 'malicious'

    @classmethod
    def from_reply(cls, reply, name, model, trace=None):
        return cls(
            label=reply['verdict'],
            score=float(reply.get('score') or 0.0),
            threshold=float(reply.get('threshold') or 0.0),
            ocsvm_score=float(reply.get('ocsvm_score') or 0.0),
            cluster=reply.get('cluster', ''),
            capabilities=tuple(reply.get('capabilities', ())),
            reasons=tuple(Reason(r['feature'], float(r['weight'] or 0.0),
                                 r['detail'])
                          for r in reply.get('reasons', ())),
            error=reply.get('error', ''),
            skip_reason=reply.get('skip_reason', ''),
            format=reply.get('format', ''),
            loader=reply.get('loader', ''),
            sha256=reply.get('sha256', ''),
            content_key=reply.get('content_key', ''),
            elapsed_ms=float(reply.get('elapsed_ms') or 0.0),
            loaded=bool(reply.get('loaded')),
            load_error=reply.get('load_error', ''),
            globals=tuple(ResolvedGlobal(g['module'], g['name'],
                                         bool(g['stub']))
                          for g in reply.get('globals', ())),
            name=name, model=model, trace=trace)

    def summary(self):
        """One line for people, like a line of ``dynahug scan``."""
        if self.label in ('benign', 'malicious'):
            text = '%s %s: score %.3f %s %.3f [%s]' % (
                self.label.upper(), self.name, self.score,
                '>' if self.score > self.threshold else '<=',
                self.threshold, self.cluster)
            if self.capabilities:
                text += ' capabilities: ' + ', '.join(self.capabilities)
            if self.label == 'malicious' and self.reasons:
                text += '; ' + '; '.join(
                    r.detail or r.feature for r in self.reasons[:6])
            return text
        if self.label == 'skipped':
            return 'SKIPPED %s: %s' % (self.name, self.skip_reason)
        return 'ERROR %s: %s' % (self.name, self.error)


class DynahugError(Exception):
    """Base class of dynahug's errors."""


class MaliciousModelError(DynahugError):
    """The file was judged malicious; nothing of it was unpickled in this
    process. ``verdict`` holds the evidence (score, capabilities,
    reasons)."""

    def __init__(self, verdict, message=None):
        super().__init__(message or verdict.summary())
        self.verdict = verdict


class UnvettedGlobalError(MaliciousModelError):
    """The load in this process asked for a global that the sandboxed
    analysis of the same bytes never resolved: the file behaves differently
    outside the sandbox. Raised before that global is imported or looked
    up."""

    def __init__(self, verdict, module, name):
        super().__init__(verdict, (
            'dynahug: %s asked for %s.%s, which its sandboxed analysis never '
            'resolved (a file that behaves differently outside the sandbox); '
            'refused before importing it. Allow it with '
            'dynahug.configure(allow_globals=[%r]) only if you trust it.'
            % (verdict.name or 'the file', module, name,
               '%s.%s' % (module, name))))
        self.module = module
        self.name = name


class ScanError(DynahugError):
    """The analysis was inconclusive (``verdict.label`` is ``"error"``; in
    strict mode also ``"skipped"``, and a benign verdict whose sandboxed
    load did not complete), or the helper process failed (``verdict`` is
    None then). Nothing was unpickled in this process."""

    def __init__(self, message, verdict=None):
        super().__init__(message)
        self.verdict = verdict
