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
    { let t = "[daemon]\nstate = \"/tmp/probe/state.db\"\n[[watch]]\nname = \"r\"\nremote_dir = \"/x\"\nlocal_dir = \"/tmp/probe/out\"\nretry = { attempts = 4294967296 }\n"; let c = ferry::config::parse(Path::new("/tmp/probe/f.toml"), t).unwrap(); println!("ATTEMPTS {}", c.rules[0].retry.attempts); }
    show("sftp", &format!("{head}[servers.a]\nprotocol = \"sftp\"\nhost = \"h\"\n"));
    show("ftpx", &format!("{head}[servers.a]\nprotocol = \"gopher\"\n"));
    show("explicit local", &w("server = \"local\"\n"));
    show("unknown server", &w("server = \"nas\"\n"));
    show("bad duration", &w("interval = \"soon\"\n"));
    show("bad duration2", &w("interval = \"30\"\n"));
    show("zero interval", &w("interval = \"0s\"\n"));
    show("rel local", &format!("{head}[[watch]]\nname = \"r\"\nremote_dir = \"/x\"\nlocal_dir = \"out\"\n"));
    show("rel remote", &format!("{head}[[watch]]\nname = \"r\"\nremote_dir = \"in\"\nlocal_dir = \"/tmp/probe/out\"\n"));
    show("neither", &format!("{head}[[watch]]\nname = \"r\"\nremote_dir = \"/x\"\n"));
    show("move+delete", &w("move_to = \"/done\"\ndelete = true\n"));
    show("min>max", &w("min_size = 10\nmax_size = 5\n"));
    show("empty handler", &w("handler = []\n"));
    show("placeholder", &w("handler = [\"cp\", \"{localpath}\", \"/x\"]\n"));
    show("attempts0", &w("retry = { attempts = 0 }\n"));
    show("attempts big", &w("retry = { attempts = 4294967296 }\n"));
    show("max_transfers0", "[daemon]\nstate = \"/tmp/probe/state.db\"\nmax_transfers = 0\n");
    show("marker", &w("ready_marker = \"done\"\n"));
    show("name", &format!("{head}[[watch]]\nname = \"my rule\"\nremote_dir = \"/x\"\nlocal_dir = \"/tmp/probe/out\"\n"));
    show("dup", &format!("{}{}", w(""), "[[watch]]\nname = \"r\"\nremote_dir = \"/y\"\nlocal_dir = \"/tmp/probe/out\"\n"));
    std::fs::write("/tmp/probe/afile", "x").unwrap();
    show("file ancestor", &format!("{head}[[watch]]\nname = \"r\"\nremote_dir = \"/x\"\nlocal_dir = \"/tmp/probe/afile/sub\"\n"));
    show("pw file", &format!("{head}[servers.a]\nprotocol = \"local\"\npassword = {{ file = \"/tmp/probe/nope\" }}\n"));
    show("move_to same", &w("move_to = \"/tmp/probe/in/\"\n"));
    show("metrics", "[daemon]\nstate = \"/tmp/probe/state.db\"\nmetrics = \"127.0.0.1:9\"\n");
    show("empty", "");
    show("state rel", "[daemon]\nstate = \"state.db\"\n");
    show("port", &format!("{head}[servers.a]\nprotocol = \"local\"\nport = 70000\n"));
    show("unicode", &format!("{head}[[watch]]\nname = \"é\"\nremote_dir = \"/x\"\nlocal_dir = \"/tmp/probe/out\"\n"));
}
