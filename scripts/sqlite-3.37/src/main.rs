//! `sqlite-3-37 FILE SQL`: runs SQL (one or more statements) on FILE with SQLite 3.37.0 and
//! prints each result row as the `sqlite3` shell does in list mode (`a|b`); on an error,
//! prints it and exits 1. `sqlite-3-37 --version` prints the library's version.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::process::ExitCode;

use libsqlite3_sys as ffi;

unsafe extern "C" fn print_row(
    _: *mut c_void,
    columns: c_int,
    values: *mut *mut c_char,
    _: *mut *mut c_char,
) -> c_int {
    let row: Vec<String> = (0..columns as usize)
        .map(|i| {
            let value = unsafe { *values.add(i) };
            match value.is_null() {
                true => String::new(),
                false => unsafe { CStr::from_ptr(value) }
                    .to_string_lossy()
                    .into_owned(),
            }
        })
        .collect();
    println!("{}", row.join("|"));
    0
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--version") {
        let version = unsafe { CStr::from_ptr(ffi::sqlite3_libversion()) };
        println!("{}", version.to_string_lossy());
        return ExitCode::SUCCESS;
    }
    let [file, sql] = args.as_slice() else {
        eprintln!("usage: sqlite-3-37 FILE SQL");
        return ExitCode::from(2);
    };
    let (file, sql) = (
        CString::new(file.as_str()).unwrap(),
        CString::new(sql.as_str()).unwrap(),
    );
    let mut db = std::ptr::null_mut();
    let mut error: *mut c_char = std::ptr::null_mut();
    let code = unsafe {
        let opened = ffi::sqlite3_open_v2(
            file.as_ptr(),
            &mut db,
            ffi::SQLITE_OPEN_READWRITE,
            std::ptr::null(),
        );
        match opened {
            ffi::SQLITE_OK => {
                ffi::sqlite3_busy_timeout(db, 5000);
                ffi::sqlite3_exec(
                    db,
                    sql.as_ptr(),
                    Some(print_row),
                    std::ptr::null_mut(),
                    &mut error,
                )
            }
            other => other,
        }
    };
    let result = match code {
        ffi::SQLITE_OK => ExitCode::SUCCESS,
        _ => {
            let message = match error.is_null() {
                false => unsafe { CStr::from_ptr(error) }
                    .to_string_lossy()
                    .into_owned(),
                true => unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }
                    .to_string_lossy()
                    .into_owned(),
            };
            eprintln!("Error: {message}");
            ExitCode::FAILURE
        }
    };
    unsafe {
        ffi::sqlite3_free(error.cast());
        ffi::sqlite3_close(db);
    }
    result
}
