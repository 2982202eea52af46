use std::path::Path;

fn show(name: &str, text: &str) {
    let p = Path::new("/tmp/probe/ferry.toml");
    match ferry::config::parse(p, text) {
        Ok(_) => println!("=== {name}: OK"),
        Err(e) => {
            println!("=== {name}:");
            for x in &e.0 {
                println!("  {}:{}: {}", x.line, x.col, x.message);
            }
        }
    }
}

#[test]
fn probe() {
    std::fs::create_dir_all("/tmp/probe/out").unwrap();
    let head = "[daemon]\nstate = \"/tmp/probe/state.db\"\n\n";
    let w = |extra: &str| format!("{head}[[watch]]\nname = \"r\"\nremote_dir = \"/tmp/probe/in\"\nlocal_dir = \"/tmp/probe/out\"\n{extra}");
    show("valid", &w(""));
    show("syntax", &w("interval = \"30s\n"));
    show("syntax2", &w("interval = = 3\n"));
    show("unknown", &w("intervall = \"30s\"\n"));
    show("wrongtype", &w("interval = 30\n"));
    show("missing remote_dir", &format!("{head}[[watch]]\nname = \"r\"\nlocal_dir = \"/tmp/probe/out\"\n"));
    show("missing name", &format!("{head}[[watch]]\nremote_dir = \"/x\"\nlocal_dir = \"/tmp/probe/out\"\n"));
    show("env password", &format!("{head}[servers.a]\nprotocol = \"local\"\npassword = {{ env = \"HOME\" }}\n"));
    show("env password unset", &format!("{head}[servers.a]\nprotocol = \"local\"\npassword = {{ env = \"FERRY_NOPE_X\" }}\n"));
    show("inline password", &format!("{head}[servers.a]\nprotocol = \"local\"\npassword = \"hunter2\"\n"));
    show("typo password", &format!("{head}[servers.a]\nprotocol = \"local\"\npassword = {{ envv = \"HOME\" }}\n"));
    show("daemon unknown", "[daemon]\nstate = \"/tmp/probe/state.db\"\nmax_transfer = 3\n");
    show("send", &format!("{head}[[send]]\nname = \"x\"\n"));
    show("handler wrongtype", &w("handler = \"cat\"\n"));
    show("retry wrong", &w("retry = { attempts = \"3\" }\n"));
    show("dup key", &w("interval = \"1s\"\ninterval = \"2s\"\n"));
    show("missing protocol", &format!("{head}[servers.a]\nhost = \"x\"\n"));
    show("bad glob", &w("include = [\"a[\"]\n"));
}
