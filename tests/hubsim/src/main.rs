fn main() {
    eprintln!("hubsim: not built yet");
    std::process::exit(2);
}
