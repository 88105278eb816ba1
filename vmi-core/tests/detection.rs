//! OS detection is order-independent: every registered detector runs, a failing one hides no
//! other, the surest profile is bound (ties by detector name), and every verdict is kept.
//! The detectors here decide from the first byte of guest memory, so one test binary can play
//! several guests.

use std::any::Any;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use vmi_core::memory::BufferMemory;
use vmi_core::os::{DetectionReport, Threads};
use vmi_core::registry::OsDetector;
use vmi_core::{
    AddressSpace, Architecture, Confidence, DetectOptions, Detection, Mapping, OsError, OsInfo,
    OsProfile, Pa, PageWalk, PagingMode, PhysicalMemory, Session, Target, Translation,
    TranslationError, Va,
};

/// Paging is not what these tests are about.
struct NoPaging;

impl Architecture for NoPaging {
    fn name(&self) -> &'static str {
        "none"
    }
    fn translate(
        &self,
        _: &dyn PhysicalMemory,
        space: AddressSpace,
        va: Va,
    ) -> Result<Translation, TranslationError> {
        Err(TranslationError::NonCanonical {
            va,
            mode: space.mode,
        })
    }
    fn walk(&self, mem: &dyn PhysicalMemory, space: AddressSpace, va: Va) -> PageWalk {
        PageWalk {
            va,
            space,
            steps: Vec::new(),
            result: self.translate(mem, space, va),
        }
    }
    fn for_each_mapping(
        &self,
        _: &dyn PhysicalMemory,
        _: AddressSpace,
        _: &mut dyn FnMut(Result<Mapping, TranslationError>) -> ControlFlow<()>,
    ) {
    }
}

/// A profile that answers nothing but its name.
struct Named(&'static str);

impl OsProfile for Named {
    fn info(&self) -> OsInfo {
        OsInfo {
            kind: self.0.to_owned(),
            version: String::new(),
            kernel_base: Va::new(0),
            kaslr_slide: 0,
            kernel_dtb: Pa::new(0),
            kernel_paging_mode: PagingMode::Disabled,
            kernel_dtb_source: String::new(),
            details: BTreeMap::new(),
        }
    }
    fn kernel_space(&self) -> AddressSpace {
        AddressSpace {
            root: Pa::new(0),
            mode: PagingMode::Disabled,
        }
    }
    fn is_kernel_address(&self, _: Va) -> bool {
        false
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Guest "kinds", the first byte of memory.
const ONLY_FAILURES: u8 = 0;
const TWO_FOUND: u8 = 1;
const TIE: u8 = 2;
const DEEP_WINS: u8 = 3;

fn scenario(session: &Session) -> u8 {
    let mut byte = [u8::MAX];
    let _ = session.memory().read(Pa::new(0), &mut byte);
    byte[0]
}

fn broken(session: &Session, _: &DetectOptions) -> Detection {
    let _ = scenario(session);
    Detection::Failed("its structures are corrupt".into())
}

fn sure(session: &Session, _: &DetectOptions) -> Detection {
    match scenario(session) {
        TWO_FOUND => Detection::Found {
            profile: Box::new(Named("sure")),
            confidence: Confidence::CERTAIN,
        },
        TIE | DEEP_WINS => Detection::Found {
            profile: Box::new(Named("sure")),
            confidence: Confidence(70),
        },
        _ => Detection::NotThisOs("no banner".into()),
    }
}

fn unsure(session: &Session, _: &DetectOptions) -> Detection {
    match scenario(session) {
        TWO_FOUND | TIE | DEEP_WINS => Detection::Found {
            profile: Box::new(Named("unsure")),
            confidence: Confidence(70),
        },
        _ => Detection::NotThisOs("no self-map".into()),
    }
}

/// Only an expensive search can tell; with it, this finds its OS only on a DEEP_WINS guest
/// (where nothing is proven, so the search runs).
fn deep(session: &Session, options: &DetectOptions) -> Detection {
    match (options.exhaustive, scenario(session)) {
        (false, _) => Detection::Deferred("needs a full scan".into()),
        (true, DEEP_WINS) => Detection::Found {
            profile: Box::new(Named("deep")),
            confidence: Confidence(90),
        },
        (true, _) => Detection::NotThisOs("scanned everything".into()),
    }
}

// Registered in an order that differs from both name order and confidence order.
static UNSURE: OsDetector = OsDetector {
    name: "b-unsure",
    description: "finds its OS without proof",
    detect: unsure,
};
static BROKEN: OsDetector = OsDetector {
    name: "a-broken",
    description: "always fails",
    detect: broken,
};
static SURE: OsDetector = OsDetector {
    name: "c-sure",
    description: "finds its OS with proof",
    detect: sure,
};
static DEEP: OsDetector = OsDetector {
    name: "d-deep",
    description: "needs an expensive search",
    detect: deep,
};
vmi_core::register_os_detector!(DEEP);
vmi_core::register_os_detector!(UNSURE);
vmi_core::register_os_detector!(BROKEN);
vmi_core::register_os_detector!(SURE);

fn session(kind: u8) -> Session {
    let memory = Arc::new(BufferMemory::new(Pa::new(0), vec![kind; 4096]));
    let target = Target::builder("test", "buffer", memory).build();
    Session::from_target("guest", target, Box::new(NoPaging))
}

fn verdicts(s: &Session) -> Vec<(&'static str, &'static str, bool)> {
    s.detections()
        .iter()
        .map(|d: &DetectionReport| (d.detector, d.outcome, d.bound))
        .collect()
}

#[test]
fn a_failing_detector_hides_no_other_and_the_surest_is_bound() {
    let mut s = session(TWO_FOUND);
    let os = s
        .detect_os(&DetectOptions::default())
        .map(|os| os.info().kind);
    assert_eq!(os.as_deref(), Some("sure"));
    assert_eq!(
        verdicts(&s),
        [
            ("a-broken", "failed", false),
            ("b-unsure", "found", false),
            ("c-sure", "found", true),
            ("d-deep", "deferred", false),
        ]
    );
    assert!(s.detections()[3].reason.contains("not needed"));
    assert_eq!(s.detections()[0].reason, "its structures are corrupt");
    assert_eq!(s.detections()[2].confidence, Some(Confidence::CERTAIN));
}

#[test]
fn equally_sure_detectors_are_decided_by_name_not_registration_order() {
    let mut s = session(TIE);
    let os = s
        .detect_os(&DetectOptions::default())
        .map(|os| os.info().kind);
    assert_eq!(
        os.as_deref(),
        Some("unsure"),
        "b-unsure sorts before c-sure"
    );
    assert_eq!(
        s.detections()[3].outcome,
        "not-this-os",
        "nothing proven: it ran"
    );
}

#[test]
fn with_nothing_proven_the_deferred_search_runs_and_can_win() {
    let mut s = session(DEEP_WINS);
    let os = s
        .detect_os(&DetectOptions::default())
        .map(|os| os.info().kind);
    assert_eq!(os.as_deref(), Some("deep"), "90% beats two at 70%");
    assert_eq!(s.detections()[3].outcome, "found");
}

#[test]
fn no_os_is_an_error_that_says_what_each_detector_found() {
    let mut s = session(ONLY_FAILURES);
    assert!(s.detect_os(&DetectOptions::default()).is_none());
    let e = s.identified_os().err().map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some(
            "target `guest`: no guest OS was identified (a-broken: its structures are corrupt; \
             b-unsure: no self-map; c-sure: no banner; d-deep: scanned everything)"
        )
    );
}

#[test]
fn a_missing_capability_names_the_os_and_what_was_asked() {
    let mut s = session(TWO_FOUND);
    s.detect_os(&DetectOptions::default());
    let e = s
        .os_capability("threads", |os| os.threads())
        .map(|_: &dyn Threads| ());
    assert!(matches!(e, Err(OsError::Lacks { .. })));
    assert_eq!(
        e.err().map(|e| e.to_string()).as_deref(),
        Some("target `guest`: the sure profile cannot list threads")
    );
}
