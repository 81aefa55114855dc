//! The CSV import (API.md, `POST /api/v1/admin/import` and `onepush import`)
//! with files as Excel and people write them: a UTF-8 BOM, quoted commas and
//! quotes, Shift_JIS (CP932), and bad lines named by the line an editor shows.

use encoding_rs::SHIFT_JIS;
use serde_json::Value;

use crate::common::*;

const C: &str = "1000000001";
const HEADER: &str = "contract_no,user_id,name,role,password,transaction_password\r\n";

fn import(w: &World, content_type: &str, body: Vec<u8>) -> Resp {
    request("POST", &w.s.url("/api/v1/admin/import"), &w.admin(), Some((content_type, body)))
}

/// The contract's users as the admin API reads them back: (user_id, name).
fn names(w: &World) -> Vec<(String, String)> {
    let r = w.s.get(&format!("/api/v1/admin/contracts/{C}"), &w.admin());
    assert_eq!(r.status, 200, "{}", r.text);
    let users = r.json["users"].as_array().unwrap_or_else(|| panic!("{}", r.text));
    let mut v: Vec<(String, String)> =
        users.iter().map(|u| (u["user_id"].as_str().unwrap().to_string(), u["name"].as_str().unwrap().to_string())).collect();
    v.sort();
    v
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// What Excel in Japan saves as "CSV": Windows-31J (CP932).
fn cp932(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = SHIFT_JIS.encode(text);
    assert!(!unmappable, "{text} has no CP932 form");
    bytes.into_owned()
}

/// A refused import: 400, nothing created, and its bad lines as (line, message).
fn bad_lines(r: &Resp) -> Vec<(u64, String)> {
    assert_eq!((r.status, &r.json["created"]), (400, &Value::from(0)), "{}", r.text);
    r.json["errors"].as_array().unwrap().iter().map(|e| (e["line"].as_u64().unwrap(), e["message"].as_str().unwrap().to_string())).collect()
}

fn created(r: &Resp) -> u64 {
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["errors"], serde_json::json!([]), "{}", r.text);
    r.json["created"].as_u64().unwrap()
}

#[test]
fn a_utf8_file_with_a_bom_imports_its_header_and_rows() {
    let w = World::new("");
    w.contract(C, "jweb");
    // Excel's "CSV UTF-8": a BOM, then the header, CRLF line ends.
    let csv = format!("\u{FEFF}{HEADER}{C},t1,山田 太郎,service_admin,{PASSWORD},{TX_PASSWORD}\r\n{C},t2,Hanako,user,{PASSWORD}\r\n");
    assert_eq!(created(&import(&w, "text/csv", csv.into_bytes())), 2);
    assert_eq!(names(&w), pairs(&[("t1", "山田 太郎"), ("t2", "Hanako")]));
    assert_eq!(w.login(C, "t1", PASSWORD).json["reason"], "push_not_registered");
}

#[test]
fn quoted_fields_keep_commas_quotes_and_spaces() {
    let w = World::new("");
    w.contract(C, "jweb");
    // Unquoted fields lose the spaces around them, as before; a quoted
    // field is the user's exactly, a password's spaces included.
    let csv = format!(
        "{C},q1,\"Yamada, Taro \"\"Jr.\"\"\",user,\" pass, word \"\n\
         {C}, q2 , Suzuki ,user, {PASSWORD} ,\"\"\n"
    );
    assert_eq!(created(&import(&w, "text/csv", csv.into_bytes())), 2);
    assert_eq!(names(&w), pairs(&[("q1", "Yamada, Taro \"Jr.\""), ("q2", "Suzuki")]));
    assert_eq!(w.login(C, "q1", " pass, word ").json["reason"], "push_not_registered");
    assert_eq!(w.login(C, "q1", "pass, word").json["reason"], "bad_credentials");
    assert_eq!(w.login(C, "q2", PASSWORD).json["reason"], "push_not_registered");
}

#[test]
fn a_cp932_file_from_excel_imports_with_its_japanese_names() {
    let w = World::new("");
    w.contract(C, "jweb");
    // ① and 髙 are CP932's NEC and IBM extensions; ｶﾅ is half-width katakana.
    let csv = format!(
        "{HEADER}{C},s1,山田　太郎,service_admin,{PASSWORD},{TX_PASSWORD}\r\n\
         {C},s2,\"髙橋, 花子①\",user,{PASSWORD}\r\n\
         {C},s3,ﾔﾏﾀﾞ ｼﾞﾛｳ,admin,{PASSWORD}\r\n"
    );
    let bytes = cp932(&csv);
    assert!(std::str::from_utf8(&bytes).is_err(), "the test file must not be UTF-8");
    assert_eq!(created(&import(&w, "text/csv", bytes)), 3);
    assert_eq!(names(&w), pairs(&[("s1", "山田　太郎"), ("s2", "髙橋, 花子①"), ("s3", "ﾔﾏﾀﾞ ｼﾞﾛｳ")]));

    // The CLI reads the file the same way.
    let file = w.s.dir.join("users-cp932.csv");
    std::fs::write(&file, cp932(&format!("{C},s4,佐藤 三郎,user,{PASSWORD}\r\n"))).unwrap();
    let (code, out, err) = w.s.cli(&["import", file.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "imported 1 users\n");
    assert!(names(&w).contains(&("s4".to_string(), "佐藤 三郎".to_string())));
    // A file that is neither UTF-8 nor Shift_JIS: its line, and nothing sent.
    let mut bytes = cp932(&format!("{C},s5,伊藤,user,{PASSWORD}\n"));
    bytes.extend_from_slice(format!("{C},s6,").as_bytes());
    bytes.extend_from_slice(b"\xA0,user,login-pass-1\n");
    std::fs::write(&file, bytes).unwrap();
    let (code, _, err) = w.s.cli(&["import", file.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert!(err.contains("line 2: encoding: neither UTF-8 nor Shift_JIS"), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
    assert!(!names(&w).iter().any(|(u, _)| u == "s5"));
}

#[test]
fn a_declared_charset_is_the_one_read() {
    let w = World::new("");
    w.contract(C, "jweb");
    let row = |uid: &str, name: &str| cp932(&format!("{C},{uid},{name},user,{PASSWORD}\r\n"));
    assert_eq!(created(&import(&w, "text/csv; charset=shift_jis", row("c1", "渡辺 一郎"))), 1);
    assert_eq!(created(&import(&w, "text/csv;charset=\"Windows-31J\"", row("c2", "中村 二郎"))), 1);
    assert_eq!(created(&import(&w, "text/csv; charset=CP932", row("c3", "小林 三郎"))), 1);
    assert_eq!(created(&import(&w, "text/csv; charset=utf-8", format!("{C},c4,加藤 四郎,user,{PASSWORD}\n").into_bytes())), 1);
    assert_eq!(names(&w), pairs(&[("c1", "渡辺 一郎"), ("c2", "中村 二郎"), ("c3", "小林 三郎"), ("c4", "加藤 四郎")]));
    // Declared UTF-8 is not second-guessed: the Shift_JIS line is named.
    let mut body = format!("{C},c5,Ok,user,{PASSWORD}\n").into_bytes();
    body.extend(row("c6", "吉田 五郎"));
    let lines = bad_lines(&import(&w, "text/csv; charset=utf-8", body));
    assert_eq!(lines, [(2, "encoding: not UTF-8 text (charset=utf-8)".to_string())]);
    // Another charset is refused as a whole.
    let r = import(&w, "text/csv; charset=euc-jp", row("c7", "x"));
    assert_eq!((r.status, r.code()), (400, "bad_request"), "{}", r.text);
    assert_eq!(r.json["error"]["message"], "charset: must be utf-8 or shift_jis (also windows-31j, cp932)");
    assert_eq!(names(&w).len(), 4, "nothing more imported");
}

#[test]
fn one_bad_line_among_good_ones_imports_nothing_and_is_named() {
    let w = World::new("");
    w.contract(C, "jweb");
    // Line 4 is blank; the bad line is 5, as an editor numbers it.
    let csv = format!(
        "{HEADER}{C},g1,\"Kato, Ichiro\",user,{PASSWORD}\r\n{C},g2,Kimura,user,{PASSWORD}\r\n\r\n\
         {C},g3,Hayashi,boss,{PASSWORD}\r\n{C},g4,Mori,user,{PASSWORD}\r\n"
    );
    let lines = bad_lines(&import(&w, "text/csv", csv.into_bytes()));
    assert_eq!(lines, [(5, "role: must be user, admin or service_admin".to_string())]);
    assert!(names(&w).is_empty(), "nothing written");

    // A quoted newline makes a record span lines: it is named by its first,
    // and the lines after it keep their numbers. A name that was decoded in
    // the wrong encoding before it was sent (U+FFFD) is refused too.
    let csv = format!(
        "{C},m1,Ok,user,{PASSWORD}\n{C},m2,\"Two\nLines\",user,{PASSWORD}\n{C},m3,Bad role,root,{PASSWORD}\n\
         {C}, m4, \"Kato, Jiro\",user,{PASSWORD}\n{C},m5,Yamada \u{FFFD}\u{FFFD},user,{PASSWORD}\n{C},m6,\"Open,user,{PASSWORD}\n\
         {C},m7,Never read,user,{PASSWORD}\n"
    );
    let lines = bad_lines(&import(&w, "text/csv", csv.into_bytes()));
    let at: Vec<u64> = lines.iter().map(|l| l.0).collect();
    assert_eq!(at, [2, 4, 5, 6, 7], "{lines:?}");
    assert_eq!(lines[0].1, "name: must not contain control characters");
    assert!(lines[1].1.starts_with("role:"), "{lines:?}");
    assert_eq!(lines[2].1, "name: a quote must be the field's first character, with no space before it");
    assert!(lines[3].1.starts_with("name: contains U+FFFD"), "{lines:?}");
    assert_eq!(lines[4].1, "a quote opens a field here and is never closed");
    assert!(names(&w).is_empty(), "nothing written");
}
