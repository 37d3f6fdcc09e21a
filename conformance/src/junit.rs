//! A run of the suite as JUnit XML, the test report format CI systems read
//! (Jenkins, GitLab, GitHub test reporters): one `<testsuite>` per level,
//! one `<testcase>` per scenario, a `<failure>` with the first difference
//! and the end of the transcript, and the runner's log of a failed scenario
//! in `<system-err>`.

use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use crate::driver::Outcome;
use crate::level::Level;
use crate::report::tallies;

/// How much of a failed scenario's runner log goes into `<system-err>`.
const LOG_TAIL_BYTES: usize = 64 * 1024;

/// The outcomes as a JUnit XML document.
pub fn junit(outcomes: &[Outcome]) -> io::Result<String> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let seconds: f64 = outcomes.iter().map(|o| o.elapsed.as_secs_f64()).sum();
    let mut root = BytesStart::new("testsuites");
    root.push_attribute(("name", "runner-conformance"));
    root.push_attribute(("tests", outcomes.len().to_string().as_str()));
    root.push_attribute(("failures", failed.to_string().as_str()));
    root.push_attribute(("errors", "0"));
    root.push_attribute(("time", format!("{seconds:.3}").as_str()));
    w.write_event(Event::Start(root))?;
    for tally in tallies(outcomes) {
        let of_level: Vec<&Outcome> = outcomes.iter().filter(|o| o.level == tally.level).collect();
        let seconds: f64 = of_level.iter().map(|o| o.elapsed.as_secs_f64()).sum();
        let mut suite = BytesStart::new("testsuite");
        suite.push_attribute(("name", tally.level.as_str()));
        suite.push_attribute(("tests", tally.total().to_string().as_str()));
        suite.push_attribute(("failures", tally.failed.to_string().as_str()));
        suite.push_attribute(("errors", "0"));
        suite.push_attribute(("skipped", "0"));
        suite.push_attribute(("time", format!("{seconds:.3}").as_str()));
        w.write_event(Event::Start(suite))?;
        for o in of_level {
            case(&mut w, o, tally.level)?;
        }
        w.write_event(Event::End(BytesEnd::new("testsuite")))?;
    }
    w.write_event(Event::End(BytesEnd::new("testsuites")))?;
    let mut text = String::from_utf8(w.into_inner())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    text.push('\n');
    Ok(text)
}

fn case(w: &mut Writer<Vec<u8>>, o: &Outcome, level: Level) -> io::Result<()> {
    let mut case = BytesStart::new("testcase");
    case.push_attribute(("name", xml_text(&o.name).as_str()));
    case.push_attribute(("classname", format!("conformance.{level}").as_str()));
    case.push_attribute(("time", format!("{:.3}", o.elapsed.as_secs_f64()).as_str()));
    let Some(failure) = &o.failure else {
        w.write_event(Event::Empty(case))?;
        return Ok(());
    };
    w.write_event(Event::Start(case))?;
    let mut element = BytesStart::new("failure");
    element.push_attribute(("message", xml_text(&failure.to_string()).as_str()));
    element.push_attribute(("type", "ScenarioFailed"));
    w.write_event(Event::Start(element))?;
    let body = format!("{failure}\n\ntranscript tail:\n{}\n", o.transcript_tail(20));
    w.write_event(Event::Text(BytesText::new(&xml_text(&body))))?;
    w.write_event(Event::End(BytesEnd::new("failure")))?;
    if !o.runner_log.is_empty() {
        let log = &o.runner_log;
        let mut start = log.len().saturating_sub(LOG_TAIL_BYTES);
        while !log.is_char_boundary(start) {
            start += 1;
        }
        w.write_event(Event::Start(BytesStart::new("system-err")))?;
        w.write_event(Event::Text(BytesText::new(&xml_text(&log[start..]))))?;
        w.write_event(Event::End(BytesEnd::new("system-err")))?;
    }
    w.write_event(Event::End(BytesEnd::new("testcase")))?;
    Ok(())
}

/// Text that XML 1.0 can hold: characters it forbids even escaped (most
/// control characters, such as a terminal's ESC) are written as `\u{1b}`.
/// Markup characters are escaped by the writer.
fn xml_text(text: &str) -> String {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r')
            || ('\u{20}'..='\u{D7FF}').contains(&c)
            || ('\u{E000}'..='\u{FFFD}').contains(&c)
            || c >= '\u{10000}'
    };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if allowed(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use quick_xml::Reader;
    use quick_xml::events::Event;

    use super::*;
    use crate::driver::Failure;

    fn outcome(name: &str, level: Level, failure: Option<&str>, log: &str) -> Outcome {
        Outcome {
            name: name.to_owned(),
            level,
            failure: failure.map(|m| Failure {
                step: Some(2),
                message: m.to_owned(),
            }),
            transcript: Vec::new(),
            normalized: "← pong {\"now\":\"<time>\"}\n".to_owned(),
            elapsed: Duration::from_millis(250),
            runner_log: log.to_owned(),
        }
    }

    /// An element's name, attributes and text.
    type Element = (String, Vec<(String, String)>, String);

    /// Every element, in document order.
    fn parse(xml: &str) -> Vec<Element> {
        let mut reader = Reader::from_str(xml);
        let mut out: Vec<Element> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        loop {
            let event = reader.read_event().expect("well-formed XML");
            if let Event::Start(_) = &event {
                open.push(out.len());
            }
            match event {
                Event::Start(e) | Event::Empty(e) => {
                    let attrs = e
                        .attributes()
                        .map(|a| {
                            let a = a.expect("an attribute");
                            (
                                String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                                a.unescape_value().expect("escaped").into_owned(),
                            )
                        })
                        .collect();
                    out.push((
                        String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
                        attrs,
                        String::new(),
                    ));
                }
                Event::Text(t) => {
                    if let Some(&at) = open.last() {
                        out[at].2.push_str(&t.unescape().expect("escaped text"));
                    }
                }
                Event::End(_) => {
                    open.pop();
                }
                Event::Eof => return out,
                _ => {}
            }
        }
    }

    fn attr<'a>(element: &'a Element, key: &str) -> &'a str {
        element
            .1
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{} has no {key}", element.0))
    }

    #[test]
    fn one_suite_per_level_one_case_per_scenario() {
        let outcomes = vec![
            outcome("spawn-ok", Level::Contract, None, ""),
            outcome(
                "files-<&\"'>",
                Level::Contract,
                Some("expected <file_result> & \"ok\" 'x'\u{1b}[0m"),
                "runner log \u{0} line",
            ),
            outcome("auth-bad-key", Level::PizzapiRunner, None, ""),
        ];
        let xml = junit(&outcomes).unwrap();
        let elements = parse(&xml);
        let names: Vec<&str> = elements.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "testsuites",
                "testsuite",
                "testcase",
                "testcase",
                "failure",
                "system-err",
                "testsuite",
                "testcase"
            ],
            "{xml}"
        );
        assert_eq!(attr(&elements[0], "tests"), "3");
        assert_eq!(attr(&elements[0], "failures"), "1");
        assert_eq!(attr(&elements[1], "name"), "contract");
        assert_eq!(attr(&elements[1], "tests"), "2");
        assert_eq!(attr(&elements[1], "failures"), "1");
        assert_eq!(attr(&elements[3], "name"), "files-<&\"'>");
        assert_eq!(attr(&elements[3], "classname"), "conformance.contract");
        assert_eq!(attr(&elements[3], "time"), "0.250");
        assert_eq!(
            attr(&elements[4], "message"),
            "step 3: expected <file_result> & \"ok\" 'x'\\u{1b}[0m"
        );
        assert!(elements[4].2.contains("transcript tail:\n← pong"), "{xml}");
        assert_eq!(elements[5].2.trim(), "runner log \\u{0} line");
        assert_eq!(attr(&elements[6], "name"), "pizzapi-runner");
        assert_eq!(
            attr(&elements[7], "classname"),
            "conformance.pizzapi-runner"
        );
        assert!(!xml.contains('\u{1b}') && !xml.contains('\u{0}'), "{xml}");
    }

    #[test]
    fn a_long_log_keeps_its_end_on_a_character_boundary() {
        let log = format!("{}é{}", "a".repeat(LOG_TAIL_BYTES), "z".repeat(10));
        let xml = junit(&[outcome("x", Level::Hardening, Some("f"), &log)]).unwrap();
        let elements = parse(&xml);
        let err = elements.iter().find(|e| e.0 == "system-err").unwrap();
        assert!(
            err.2.trim_end().ends_with("zzzzzzzzzz"),
            "{}",
            &err.2[err.2.len() - 40..]
        );
        assert!(err.2.len() <= LOG_TAIL_BYTES + 2);
    }
}
